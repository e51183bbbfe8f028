//! Orchestrators as real processes on one PostgreSQL schema, frozen with
//! SIGSTOP past their lease and killed with SIGKILL.
//!
//! The orchestrators are this test binary re-run with `MSP_SAGA_PROC_WORKER`
//! set and filtered to `saga_process_worker` (`current_exe()` works under a
//! plain `cargo test` on a clean clone). A worker may start sagas; it
//! prints `started <id>` on stdout once `start()` returned, and the test
//! records those acknowledged ids. Every action:
//!
//! 1. counts its call in `action_calls` (a plain table, no unique key: the
//!    at-least-once re-runs are measured, not assumed);
//! 2. in one transaction: checks the saga's [`LeaseFence`], reads the clock
//!    (enter), waits, and inserts the `(enter, exit)` interval into
//!    `step_runs` with the worker's name.
//!
//! The checks: committed intervals of one saga step never overlap; a saga's
//! log, in order, never returns to a writer once another one wrote (no
//! write of a stale owner lands); every acknowledged saga ends completed.
#![cfg(feature = "postgres")]

mod common;

use common::process::{self, Proc, Rng, schema_pool};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msp_core::backoff::Backoff;
use msp_core::testing::{Backend, backend};
use msp_saga::saga::{
    LeaseFence, Orchestrator, PostgresSagaStore, Saga, SagaError, StepContext, StepError,
};
use sqlx::PgPool;
use uuid::Uuid;

const WORKER: &str = "MSP_SAGA_PROC_WORKER";
const STEPS: [&str; 3] = ["a", "b", "c"];

/// One action call: counted, then fenced and timed in one transaction.
async fn action(
    pool: PgPool,
    worker: Arc<str>,
    step_ms: u64,
    ctx: StepContext<u32>,
) -> Result<(), StepError> {
    sqlx::query(
        "INSERT INTO action_calls (idem_key, worker, saga_id, step) VALUES ($1, $2, $3, $4)",
    )
    .bind(ctx.idempotency_key().as_str())
    .bind(&*worker)
    .bind(ctx.saga_id())
    .bind(ctx.step())
    .execute(&pool)
    .await
    .map_err(StepError::retryable)?;
    let fence: &LeaseFence = ctx.fence();
    let mut tx = pool.begin().await.map_err(StepError::retryable)?;
    fence.check(&mut tx).await.map_err(StepError::retryable)?;
    let entered: f64 = sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
        .fetch_one(&mut *tx)
        .await
        .map_err(StepError::retryable)?;
    let ms = if step_ms == 0 {
        Rng::seeded().below(30)
    } else {
        step_ms
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    sqlx::query(
        "INSERT INTO step_runs (saga_id, step, worker, entered, exited) \
         VALUES ($1, $2, $3, $4, extract(epoch FROM clock_timestamp())::float8)",
    )
    .bind(ctx.saga_id())
    .bind(ctx.step())
    .bind(&*worker)
    .bind(entered)
    .execute(&mut *tx)
    .await
    .map_err(StepError::retryable)?;
    tx.commit().await.map_err(StepError::retryable)?;
    Ok(())
}

fn saga(pool: &PgPool, worker: &Arc<str>, step_ms: u64) -> Saga<u32> {
    let retry = Backoff::constant(Duration::from_millis(20)).expect("backoff");
    let mut builder: Option<msp_saga::saga::StepBuilder<u32>> = None;
    for step in STEPS {
        let (pool, worker) = (pool.clone(), worker.clone());
        let call = move |ctx| action(pool.clone(), worker.clone(), step_ms, ctx);
        let b = match builder {
            None => Saga::<u32>::builder("proc").step(step, call),
            Some(b) => b.step(step, call),
        };
        builder = Some(b.retry(retry.clone()));
    }
    builder.expect("steps").build().expect("saga")
}

/// The orchestrator process: starts `MSP_SAGA_PROC_START` sagas (one every
/// 20 ms, printing each acknowledged id), runs recovery, and records in
/// `orch_events` every saga it started and then lost to another owner.
#[test]
fn saga_process_worker() {
    let Some(name) = std::env::var_os(WORKER) else {
        return; // only runs as a child process of the tests below
    };
    let name: Arc<str> = Arc::from(format!("{}-{}", name.to_string_lossy(), std::process::id()));
    let target = std::env::var("MSP_SAGA_PROC_TARGET").expect("target");
    let starts: u32 = std::env::var("MSP_SAGA_PROC_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let step_ms: u64 = std::env::var("MSP_SAGA_PROC_STEP_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (url, schema) = target.split_once('#').expect("url#schema");
        let pool = schema_pool(url, schema, &name, 8).await;
        let saga = saga(&pool, &name, step_ms);
        let orch = Orchestrator::builder(PostgresSagaStore::new(pool.clone()))
            .owner(&*name)
            .lease(Duration::from_millis(500))
            .poll_interval(Duration::from_millis(50))
            .register(&saga)
            .build()
            .expect("orchestrator");
        let _recovery = orch.spawn_recovery();
        for n in 0..starts {
            match orch.start(&saga, n).await {
                Ok(handle) => {
                    println!("started {}", handle.id());
                    let (pool, name) = (pool.clone(), name.clone());
                    tokio::spawn(async move {
                        let id = handle.id();
                        if let Err(SagaError::LeaseLost(_)) = handle.wait().await {
                            let _ = sqlx::query(
                                "INSERT INTO orch_events (worker, saga_id, event) VALUES ($1, $2, 'lease_lost')",
                            )
                            .bind(&*name)
                            .bind(id)
                            .execute(&pool)
                            .await;
                        }
                    });
                }
                Err(e) => eprintln!("{name}: start failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("starts done");
        std::future::pending::<()>().await;
    });
}

/// What the workers printed: the acknowledged saga ids, and how many
/// workers finished their starts.
#[derive(Debug, Default)]
struct Acks {
    ids: Vec<Uuid>,
    done: usize,
}

fn spawn_worker(
    name: &str,
    target: &str,
    starts: u32,
    step_ms: u64,
    acked: &Arc<Mutex<Acks>>,
) -> Proc {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "saga_process_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER, name)
        .env("MSP_SAGA_PROC_TARGET", target)
        .env("MSP_SAGA_PROC_START", starts.to_string())
        .env("MSP_SAGA_PROC_STEP_MS", step_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    let stdout = child.stdout.take().expect("stdout");
    let acked = acked.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The first line may follow libtest's "test saga_process_worker ... ".
            let mut acks = acked.lock().unwrap_or_else(|e| e.into_inner());
            if line.ends_with("starts done") {
                acks.done += 1;
            } else if let Some((_, id)) = line.split_once("started ")
                && let Ok(id) = Uuid::parse_str(id.trim())
            {
                acks.ids.push(id);
            }
        }
    });
    Proc {
        child,
        reader: Some(reader),
    }
}

/// Polls `cond` until it holds, for at most 30 s.
async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    process::wait_for(what, Duration::from_secs(30), cond).await;
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("query")
}

async fn scalar(pool: &PgPool, sql: &str, arg: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(arg)
        .fetch_one(pool)
        .await
        .expect("query")
}

async fn setup(url: &str) -> (PgPool, String) {
    let (pool, schema) = common::pg_pool(url, 4).await;
    for sql in [
        "CREATE TABLE action_calls (id BIGSERIAL PRIMARY KEY, idem_key TEXT NOT NULL, worker TEXT NOT NULL, saga_id UUID NOT NULL, step TEXT NOT NULL)",
        "CREATE TABLE step_runs (saga_id UUID NOT NULL, step TEXT NOT NULL, worker TEXT NOT NULL, entered FLOAT8 NOT NULL, exited FLOAT8 NOT NULL)",
        "CREATE TABLE orch_events (worker TEXT NOT NULL, saga_id UUID NOT NULL, event TEXT NOT NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect("setup");
    }
    (pool, schema)
}

/// Waits until every id in `acked` is a completed saga.
async fn wait_all_completed(pool: &PgPool, acked: &[Uuid]) {
    wait_for("every acknowledged saga is completed", || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM msp_sagas WHERE id = ANY($1) AND state = 'completed'",
        )
        .bind(acked)
        .fetch_one(pool)
        .await
        .expect("count");
        done == acked.len() as i64
    })
    .await;
}

/// No two committed runs of one saga step overlap in time.
async fn assert_no_overlap(pool: &PgPool) -> usize {
    let runs: Vec<(Uuid, String, String, f64, f64)> = sqlx::query_as(
        "SELECT saga_id, step, worker, entered, exited FROM step_runs ORDER BY saga_id, step, entered",
    )
    .fetch_all(pool)
    .await
    .expect("runs");
    let mut previous: Option<&(Uuid, String, String, f64, f64)> = None;
    for run in &runs {
        if let Some(p) = previous
            && p.0 == run.0
            && p.1 == run.1
        {
            assert!(
                run.3 >= p.4,
                "saga {} step {}: {} entered at {} while {} ran until {}",
                run.0,
                run.1,
                run.2,
                run.3,
                p.2,
                p.4
            );
        }
        previous = Some(run);
    }
    runs.len()
}

/// In every saga's log, the writer changes only across a claim: a claim
/// bumps the version without writing to the log, so the first row of a new
/// writer must be more than one version past the row before it. A write by
/// a stale owner that landed after a takeover would continue the versions
/// with no gap.
async fn assert_handovers_follow_claims(pool: &PgPool) -> usize {
    let rows: Vec<(Uuid, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT saga_id, seq, writer, version FROM msp_saga_log ORDER BY saga_id, seq",
    )
    .fetch_all(pool)
    .await
    .expect("log");
    let mut handovers = 0;
    for pair in rows.windows(2) {
        let [(id, _, w1, v1), (id2, seq, w2, v2)] = pair else {
            continue;
        };
        if id != id2 || w1 == w2 {
            continue;
        }
        let (v1, v2) = (v1.expect("version"), v2.expect("version"));
        assert!(
            v2 > v1 + 1,
            "saga {id}: {w2:?} wrote log entry {seq} (version {v2}) right after {w1:?} \
             (version {v1}) without claiming the saga: a stale owner's write landed"
        );
        handovers += 1;
    }
    handovers
}

/// Calls per idempotency key: `{calls: keys}`.
async fn calls_per_key(pool: &PgPool) -> BTreeMap<i64, i64> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT n, count(*) FROM (SELECT idem_key, count(*) AS n FROM action_calls GROUP BY idem_key) c GROUP BY n ORDER BY n",
    )
    .fetch_all(pool)
    .await
    .expect("calls");
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_orchestrator_sigstopped_past_its_lease_is_fenced() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = setup(&url).await;
    let target = format!("{url}#{schema}");
    let acked = Arc::new(Mutex::new(Acks::default()));
    // A starts the sagas; each step takes 150 ms, mostly inside the fenced
    // transaction.
    let a = spawn_worker("a", &target, 8, 150, &acked);
    let in_action = "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name LIKE $1 AND state LIKE 'idle in transaction%'";
    let mut frozen = 0;
    for _ in 0..50 {
        wait_for("A runs an action", || async {
            scalar(&pool, in_action, "a-%").await > 0
        })
        .await;
        a.signal("-STOP");
        frozen = scalar(&pool, in_action, "a-%").await;
        if frozen > 0 {
            break;
        }
        a.signal("-CONT");
    }
    assert!(frozen > 0, "never froze A inside an action");
    let b = spawn_worker("b", &target, 0, 150, &acked);
    // B demonstrably takes over: no active saga is A's any more, and B
    // wrote to the log.
    wait_for("B took over every active saga of A", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM msp_sagas WHERE owner LIKE $1 AND state IN ('running', 'compensating')",
            "a-%",
        )
        .await
            == 0
            && scalar(&pool, "SELECT count(*) FROM msp_saga_log WHERE writer LIKE $1", "b-%").await
                > 0
    })
    .await;
    a.signal("-CONT");
    // Both workers finished starting (B starts none, A its 8).
    wait_for("A finished its starts", || async {
        acked.lock().unwrap_or_else(|e| e.into_inner()).done == 2
    })
    .await;
    let ids = acked.lock().unwrap_or_else(|e| e.into_inner()).ids.clone();
    assert_eq!(ids.len(), 8, "A acknowledged {} of 8 starts", ids.len());
    wait_all_completed(&pool, &ids).await;
    // A noticed, for the sagas it started, that it lost them.
    wait_for("A reports a lost lease", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM orch_events WHERE worker LIKE $1",
            "a-%",
        )
        .await
            > 0
    })
    .await;
    let handovers = assert_handovers_follow_claims(&pool).await;
    let runs = assert_no_overlap(&pool).await;
    let calls = calls_per_key(&pool).await;
    println!(
        "SIGSTOP past the lease: A frozen in {frozen} fenced actions; {} sagas completed; \
         {runs} committed step runs, none overlapping; {handovers} handovers, each after a claim; calls per idempotency key {{calls: keys}} = {calls:?}",
        ids.len()
    );
    drop((a, b));
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_start_ends_completed_under_sigkills() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    const KILLS: usize = 6;
    let (pool, schema) = setup(&url).await;
    let target = format!("{url}#{schema}");
    let acked = Arc::new(Mutex::new(Acks::default()));
    let mut rng = Rng::seeded();
    let mut workers = vec![
        spawn_worker("w0", &target, 1_000, 0, &acked),
        spawn_worker("w1", &target, 1_000, 0, &acked),
    ];
    let mut unfinished_at_kills = 0;
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + rng.below(350))).await;
        let victim = rng.below(2) as usize;
        if let Some(status) = workers[victim].child.try_wait().expect("status") {
            panic!("worker exited before it was killed: {status}");
        }
        // SIGKILL, then restart.
        workers[victim].child.kill().expect("SIGKILL worker");
        let _ = workers[victim].child.wait();
        unfinished_at_kills += count(
            &pool,
            "SELECT count(*) FROM msp_sagas WHERE state IN ('running', 'compensating')",
        )
        .await;
        workers[victim] = spawn_worker(&format!("w{victim}k{k}"), &target, 1_000, 0, &acked);
    }
    // Stop starting: two fresh workers only recover.
    workers.clear();
    let finishers = [
        spawn_worker("f0", &target, 0, 0, &acked),
        spawn_worker("f1", &target, 0, 0, &acked),
    ];
    let ids = acked.lock().unwrap_or_else(|e| e.into_inner()).ids.clone();
    assert!(ids.len() > 10, "only {} starts acknowledged", ids.len());
    wait_all_completed(&pool, &ids).await;
    assert!(
        unfinished_at_kills > 0,
        "no kill left a saga unfinished: no recovery was tested"
    );
    let handovers = assert_handovers_follow_claims(&pool).await;
    let runs = assert_no_overlap(&pool).await;
    let calls = calls_per_key(&pool).await;
    let keys: i64 = calls.values().sum();
    let extra: i64 = calls.iter().map(|(n, k)| (n - 1) * k).sum();
    let acked_keys: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT idem_key) FROM action_calls WHERE saga_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await
    .expect("keys");
    assert_eq!(
        acked_keys,
        (ids.len() * STEPS.len()) as i64,
        "every step of every acknowledged saga was called"
    );
    println!(
        "{KILLS} SIGKILLs ({unfinished_at_kills} active sagas summed at the kills); {} acknowledged starts all completed; \
         {runs} committed step runs, none overlapping; {handovers} handovers, each after a claim; {keys} idempotency keys, {extra} repeated calls; \
         calls per key {{calls: keys}} = {calls:?}",
        ids.len()
    );
    drop(finishers);
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}
