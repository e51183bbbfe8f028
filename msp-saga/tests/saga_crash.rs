//! Crash test: worker processes run sagas and are killed with SIGKILL at
//! random points, again and again; a last worker recovers everything. Then
//! every saga must be completed or fully compensated, no effect may have
//! happened twice for one idempotency key, and no compensation may have run
//! for a step that never ran.
//!
//! The worker is this same test binary, re-run with `MSP_SAGA_CRASH_WORKER`
//! set and filtered to the `crash_worker` test.

mod common;

use common::process::Rng;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use msp_core::backoff::Backoff;
use msp_saga::saga::{
    LogEvent, Orchestrator, Saga, SagaRecord, SagaState, SagaStore, StepContext, StepError,
};
use serde::{Deserialize, Serialize};

const WORKER: &str = "MSP_SAGA_CRASH_WORKER";
const KILLS: usize = 8;
const PER_WORKER: u32 = 40;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    n: u32,
}

/// Where the downstream "services" record their effects: the same database,
/// other tables, separate transactions (like a real remote service).
#[derive(Clone)]
enum Effects {
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool),
    #[cfg(feature = "sqlite")]
    Lite(sqlx::SqlitePool),
}

impl Effects {
    async fn setup(&self) {
        match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => {
                for sql in [
                    "CREATE TABLE IF NOT EXISTS crash_attempts (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS crash_effects (key TEXT PRIMARY KEY, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS crash_dedups (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL)",
                ] {
                    sqlx::query(sql).execute(p).await.expect("setup");
                }
            }
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => {
                for sql in [
                    "CREATE TABLE IF NOT EXISTS crash_attempts (id INTEGER PRIMARY KEY, key TEXT NOT NULL, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS crash_effects (key TEXT PRIMARY KEY, saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS crash_dedups (id INTEGER PRIMARY KEY, key TEXT NOT NULL)",
                ] {
                    sqlx::query(sql).execute(p).await.expect("setup");
                }
            }
        }
    }

    /// Records that the call happened (before its effect).
    async fn attempt(
        &self,
        key: &str,
        saga: &str,
        step: &str,
        phase: &str,
    ) -> Result<(), StepError> {
        match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => sqlx::query(
                "INSERT INTO crash_attempts (key, saga_id, step, phase) VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(saga)
            .bind(step)
            .bind(phase)
            .execute(p)
            .await
            .map(drop)
            .map_err(StepError::retryable),
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => sqlx::query(
                "INSERT INTO crash_attempts (key, saga_id, step, phase) VALUES (?, ?, ?, ?)",
            )
            .bind(key)
            .bind(saga)
            .bind(step)
            .bind(phase)
            .execute(p)
            .await
            .map(drop)
            .map_err(StepError::retryable),
        }
    }

    /// Applies the effect once per key (an idempotent downstream service).
    async fn effect(
        &self,
        key: &str,
        saga: &str,
        step: &str,
        phase: &str,
    ) -> Result<(), StepError> {
        let fresh = match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => sqlx::query("INSERT INTO crash_effects (key, saga_id, step, phase) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING")
                .bind(key).bind(saga).bind(step).bind(phase)
                .execute(p).await.map_err(StepError::retryable)?.rows_affected(),
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => sqlx::query("INSERT INTO crash_effects (key, saga_id, step, phase) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING")
                .bind(key).bind(saga).bind(step).bind(phase)
                .execute(p).await.map_err(StepError::retryable)?.rows_affected(),
        };
        if fresh == 0 {
            match self {
                #[cfg(feature = "postgres")]
                Effects::Pg(p) => sqlx::query("INSERT INTO crash_dedups (key) VALUES ($1)")
                    .bind(key)
                    .execute(p)
                    .await
                    .map(drop)
                    .map_err(StepError::retryable)?,
                #[cfg(feature = "sqlite")]
                Effects::Lite(p) => sqlx::query("INSERT INTO crash_dedups (key) VALUES (?)")
                    .bind(key)
                    .execute(p)
                    .await
                    .map(drop)
                    .map_err(StepError::retryable)?,
            }
        }
        Ok(())
    }

    async fn rows(&self, sql: &'static str) -> Vec<(String, String, String, String)> {
        match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.expect("query"),
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => sqlx::query_as(sql).fetch_all(p).await.expect("query"),
        }
    }

    async fn ordered(&self, sql: &'static str) -> Vec<(i64, String, String, String)> {
        match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.expect("query"),
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => sqlx::query_as(sql).fetch_all(p).await.expect("query"),
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            #[cfg(feature = "postgres")]
            Effects::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
            #[cfg(feature = "sqlite")]
            Effects::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await.expect("count"),
        }
    }
}

async fn call(
    effects: Effects,
    ctx: StepContext<Order>,
    phase: &'static str,
) -> Result<(), StepError> {
    let key = ctx.idempotency_key().to_string();
    let saga = ctx.saga_id().to_string();
    let mut rng = Rng::seeded();
    effects.attempt(&key, &saga, ctx.step(), phase).await?;
    tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    let n = ctx.data().n;
    if phase == "do" {
        if ctx.step() == "reserve" && n.is_multiple_of(4) && ctx.attempt() == 1 {
            return Err(StepError::retryable("inventory busy"));
        }
        if ctx.step() == "reserve" && n.is_multiple_of(7) {
            return Err(StepError::permanent("out of stock"));
        }
        if ctx.step() == "ship" && n.is_multiple_of(3) {
            return Err(StepError::permanent("no courier"));
        }
    } else if ctx.step() == "reserve" && n.is_multiple_of(5) && ctx.attempt() == 1 {
        return Err(StepError::retryable("inventory busy"));
    }
    effects.effect(&key, &saga, ctx.step(), phase).await?;
    tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    Ok(())
}

fn crash_saga(effects: &Effects) -> Saga<Order> {
    let e = effects.clone();
    let retry = Backoff::constant(Duration::from_millis(20)).expect("backoff");
    let mut builder: Option<msp_saga::saga::StepBuilder<Order>> = None;
    for step in ["debit", "reserve", "ship"] {
        let (ea, ec) = (e.clone(), e.clone());
        let action = move |ctx| call(ea.clone(), ctx, "do");
        let comp = move |ctx| call(ec.clone(), ctx, "undo");
        let b = match builder {
            None => Saga::<Order>::builder("crash-order").step(step, action),
            Some(b) => b.step(step, action),
        };
        builder = Some(
            b.compensate(comp)
                .retry(retry.clone())
                .compensation_retry(retry.clone()),
        );
    }
    builder.expect("steps").build().expect("saga")
}

async fn worker_main<S: SagaStore + Clone>(store: S, effects: Effects, mode: &str) {
    let saga = crash_saga(&effects);
    let orch = Orchestrator::builder(store.clone())
        .owner(format!("worker-{}", std::process::id()))
        .lease(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(50))
        .register(&saga)
        .build()
        .expect("orchestrator");
    let _recovery = orch.spawn_recovery();
    if mode == "run" {
        let offset = store.list(None, usize::MAX >> 1).await.expect("list").len() as u32;
        for i in 0..PER_WORKER {
            orch.start(&saga, Order { n: offset + i })
                .await
                .expect("start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Keep running until killed.
        std::future::pending::<()>().await;
    } else {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let running = store.list(Some(SagaState::Running), 1).await.expect("list");
            let compensating = store
                .list(Some(SagaState::Compensating), 1)
                .await
                .expect("list");
            if running.is_empty() && compensating.is_empty() && orch.active() == 0 {
                return;
            }
        }
    }
}

#[test]
fn crash_worker() {
    if std::env::var_os(WORKER).is_none() {
        return; // only runs as a child process of the tests below
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = std::env::var("MSP_SAGA_CRASH_DB").unwrap_or_default();
    let mode = std::env::var("MSP_SAGA_CRASH_MODE").unwrap_or_default();
    let target = std::env::var("MSP_SAGA_CRASH_TARGET").unwrap_or_default();
    rt.block_on(async move {
        match db.as_str() {
            #[cfg(feature = "postgres")]
            "postgres" => {
                let (url, schema) = target.split_once('#').expect("url#schema");
                let (store, pool) = pg_store(url, schema).await;
                worker_main(store, Effects::Pg(pool), &mode).await;
            }
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let store = msp_saga::saga::SqliteSagaStore::open(&target)
                    .await
                    .expect("open");
                let pool = store.pool().clone();
                worker_main(store, Effects::Lite(pool), &mode).await;
            }
            other => panic!("unknown crash db {other}"),
        }
    });
}

#[cfg(feature = "postgres")]
async fn pg_store(url: &str, schema: &str) -> (msp_saga::saga::PostgresSagaStore, sqlx::PgPool) {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(url)
        .expect("url")
        .options([("search_path", schema)]);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("connect");
    (msp_saga::saga::PostgresSagaStore::new(pool.clone()), pool)
}

fn spawn_worker(db: &str, target: &str, mode: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env(WORKER, "1")
        .env("MSP_SAGA_CRASH_DB", db)
        .env("MSP_SAGA_CRASH_TARGET", target)
        .env("MSP_SAGA_CRASH_MODE", mode)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

/// Kills workers at random points, lets a last one finish, returns the kill
/// count and how many sagas were left unfinished by the kills (summed over
/// kills; `unfinished` counts running or compensating sagas).
fn crash_loop(db: &str, target: &str, unfinished: &dyn Fn() -> usize) -> (usize, usize) {
    let mut rng = Rng::seeded();
    let (mut kills, mut interrupted) = (0, 0);
    for _ in 0..KILLS {
        let mut child = spawn_worker(db, target, "run");
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        // A "run" worker never exits by itself: if it did, it failed.
        if let Some(status) = child.try_wait().expect("worker status") {
            panic!("worker exited before it was killed: {status}");
        }
        child.kill().expect("SIGKILL worker");
        kills += 1;
        let _ = child.wait();
        interrupted += unfinished();
    }
    assert!(
        interrupted > 0,
        "no kill left a saga unfinished: the crash test tested no recovery"
    );
    let mut last = spawn_worker(db, target, "finish");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = last.try_wait().expect("worker status") {
            assert!(status.success(), "recovery worker failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = last.kill();
            panic!("recovery worker did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (kills, interrupted)
}

/// Sagas the last kill left running or compensating.
async fn unfinished<S: SagaStore>(store: &S) -> usize {
    let mut n = 0;
    for state in [SagaState::Running, SagaState::Compensating] {
        n += store.list(Some(state), 100_000).await.expect("list").len();
    }
    n
}

/// Checks the invariants and prints the counts.
async fn verify(
    label: &str,
    sagas: Vec<SagaRecord>,
    effects: &Effects,
    (kills, interrupted): (usize, usize),
) {
    assert!(
        sagas.len() >= PER_WORKER as usize,
        "too few sagas: {}",
        sagas.len()
    );
    let effect_rows = effects
        .rows("SELECT key, saga_id, step, phase FROM crash_effects")
        .await;
    let attempt_rows = effects
        .rows("SELECT key, saga_id, step, phase FROM crash_attempts")
        .await;
    let dedups = effects.count("SELECT count(*) FROM crash_dedups").await;
    // Calls in the order they happened: no action may be called again once
    // its compensation has been called (its effect would stay undone).
    let calls = effects
        .ordered("SELECT id, saga_id, step, phase FROM crash_attempts ORDER BY id")
        .await;
    let mut undo_called = BTreeSet::new();
    for (_, saga, step, phase) in &calls {
        if phase == "undo" {
            undo_called.insert((saga.clone(), step.clone()));
        } else {
            assert!(
                !undo_called.contains(&(saga.clone(), step.clone())),
                "saga {saga}: {step} called again after its compensation"
            );
        }
    }

    // One effect per (saga, step, phase), under the stable key.
    let mut per_unit: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (key, saga, step, phase) in &effect_rows {
        let expected = if phase == "do" {
            format!("{saga}:{step}")
        } else {
            format!("{saga}:{step}:compensate")
        };
        assert_eq!(key, &expected, "effect recorded under an unstable key");
        *per_unit
            .entry((saga.clone(), step.clone(), phase.clone()))
            .or_default() += 1;
    }
    assert!(
        per_unit.values().all(|&n| n == 1),
        "an effect happened twice"
    );

    let set =
        |rows: &[(String, String, String, String)], id: &str, phase: &str| -> BTreeSet<String> {
            rows.iter()
                .filter(|r| r.1 == id && r.3 == phase)
                .map(|r| r.2.clone())
                .collect()
        };
    let (mut completed, mut compensated, mut undone) = (0, 0, 0);
    for rec in &sagas {
        let id = rec.id.to_string();
        let n = rec.data["n"].as_u64().expect("n");
        let done = set(&effect_rows, &id, "do");
        let undo = set(&effect_rows, &id, "undo");
        let ran = set(&attempt_rows, &id, "do");
        // No compensation for a step that never ran (neither in the log nor in reality).
        assert!(
            undo.is_subset(&ran),
            "saga {id}: compensated {undo:?} but only ran {ran:?}"
        );
        let mut started = BTreeSet::new();
        for e in &rec.log {
            match &e.event {
                LogEvent::StepStarted { step, .. } => {
                    started.insert(step.clone());
                }
                LogEvent::CompensationStarted { step, .. } => {
                    assert!(
                        started.contains(step),
                        "saga {id}: compensation of unstarted {step}"
                    );
                }
                _ => {}
            }
        }
        match rec.state {
            SagaState::Completed => {
                completed += 1;
                assert!(
                    n % 3 != 0 && n % 7 != 0,
                    "saga {id} (n={n}) should have failed"
                );
                assert_eq!(done.len(), 3, "saga {id}: effects {done:?}");
                assert!(undo.is_empty(), "completed saga {id} compensated {undo:?}");
            }
            SagaState::Compensated => {
                compensated += 1;
                assert!(
                    n % 3 == 0 || n % 7 == 0,
                    "saga {id} (n={n}) should have completed"
                );
                assert!(!done.contains("ship"));
                if n % 7 == 0 {
                    // Failed at reserve: ship never ran, so nothing may undo it.
                    assert!(!ran.contains("ship"), "saga {id}: ship ran");
                    assert!(!done.contains("reserve"), "saga {id}: reserve took effect");
                }
                assert!(
                    done.is_subset(&undo),
                    "saga {id}: effects {done:?} not all undone ({undo:?})"
                );
                undone += undo.len();
            }
            other => panic!("saga {id} ended {other}"),
        }
    }
    println!(
        "{label}: {kills} SIGKILLs leaving {interrupted} sagas unfinished; {} sagas: {completed} completed, {compensated} compensated \
         ({undone} compensations); {} action/compensation calls, {} effects, \
         {dedups} re-runs deduplicated by idempotency key",
        sagas.len(),
        attempt_rows.len(),
        effect_rows.len(),
    );
}

#[cfg(feature = "postgres")]
#[test]
fn crash_recovery_postgres() {
    use msp_core::testing::{Backend, backend};
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (pool, schema) = rt.block_on(common::pg_pool(&url, 4));
    let effects = Effects::Pg(pool.clone());
    rt.block_on(effects.setup());
    let store = msp_saga::saga::PostgresSagaStore::new(pool.clone());
    let kills = crash_loop("postgres", &format!("{url}#{schema}"), &|| {
        rt.block_on(unfinished(&store))
    });
    rt.block_on(async {
        let sagas = store.list(None, 100_000).await.expect("list");
        verify("postgres", sagas, &effects, kills).await;
        pool.close().await;
        common::drop_schema(&url, &schema).await;
    });
}

#[cfg(feature = "sqlite")]
#[test]
fn crash_recovery_sqlite() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt
        .block_on(msp_saga::saga::SqliteSagaStore::open(&path))
        .expect("open");
    let effects = Effects::Lite(store.pool().clone());
    rt.block_on(effects.setup());
    let kills = crash_loop("sqlite", path.to_str().expect("utf-8 path"), &|| {
        rt.block_on(unfinished(&store))
    });
    rt.block_on(async {
        let sagas = store.list(None, 100_000).await.expect("list");
        verify("sqlite", sagas, &effects, kills).await;
    });
}
