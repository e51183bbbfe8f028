//! Several orchestrators sharing one PostgreSQL store.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msp_core::testing::{Backend, backend};
use msp_saga::saga::store::PostgresSagaStore;
use msp_saga::saga::{Orchestrator, Saga, SagaState, StepContext, StepError};
use uuid::Uuid;

#[derive(Default)]
struct Probe {
    /// Calls in flight per saga right now.
    in_flight: HashMap<Uuid, usize>,
    /// The most calls ever in flight for one saga.
    max_in_flight: usize,
    /// Calls per (saga, step).
    calls: HashMap<(Uuid, String), usize>,
    /// Calls made by each orchestrator.
    by_orchestrator: HashMap<&'static str, usize>,
}

type Shared = Arc<Mutex<Probe>>;

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Probe> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

async fn step(probe: Shared, who: &'static str, ctx: StepContext<u32>) -> Result<u32, StepError> {
    {
        let mut p = lock(&probe);
        let n = p.in_flight.entry(ctx.saga_id()).or_default();
        *n += 1;
        let now = *n;
        p.max_in_flight = p.max_in_flight.max(now);
        *p.calls
            .entry((ctx.saga_id(), ctx.step().to_owned()))
            .or_default() += 1;
        *p.by_orchestrator.entry(who).or_default() += 1;
    }
    // Some calls outlast the lease (1 s): only lease renewal keeps the other
    // orchestrator from taking the saga over meanwhile.
    let n = *ctx.data();
    let ms = if n.is_multiple_of(7) && ctx.step() == "b" {
        1_300
    } else {
        5 + u64::from(n % 5) * 20
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    if let Some(n) = lock(&probe).in_flight.get_mut(&ctx.saga_id()) {
        *n -= 1;
    }
    Ok(n)
}

fn saga(probe: &Shared, who: &'static str) -> Saga<u32> {
    let (a, b, c) = (probe.clone(), probe.clone(), probe.clone());
    Saga::<u32>::builder("shared")
        .step("a", move |ctx| step(a.clone(), who, ctx))
        .step("b", move |ctx| step(b.clone(), who, ctx))
        .step("c", move |ctx| step(c.clone(), who, ctx))
        .build()
        .expect("saga")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrators_never_run_one_saga_step_concurrently() {
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool_a, schema) = common::pg_pool(&url, 5).await;
    let pool_b = {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        use std::str::FromStr;
        let options = PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("second pool")
    };
    let probe: Shared = Arc::default();
    let build = |pool, who: &'static str| {
        Orchestrator::builder(PostgresSagaStore::new(pool))
            .owner(who)
            .lease(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(20))
            .claim_batch(2)
            .max_active(4)
            .register(&saga(&probe, who))
            .build()
            .expect("orchestrator")
    };
    let a = build(pool_a.clone(), "A");
    let b = build(pool_b.clone(), "B");
    let mut notices = (a.subscribe(), b.subscribe());

    const SAGAS: usize = 24;
    let def = saga(&probe, "A");
    let mut ids = Vec::new();
    for n in 0..SAGAS {
        ids.push(a.submit(&def, n as u32).await.expect("submit"));
    }
    let (_ra, _rb) = (a.spawn_recovery(), b.spawn_recovery());

    let mut done = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while done < SAGAS {
        let notice = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                n = notices.0.recv() => n,
                n = notices.1.recv() => n,
            }
        })
        .await;
        let Ok(notice) = notice else { break };
        assert_eq!(notice.expect("notice").state, SagaState::Completed);
        done += 1;
    }
    assert_eq!(
        lock(&probe).max_in_flight,
        1,
        "a saga ran two steps at once"
    );
    assert_eq!(done, SAGAS, "all sagas finish within 60 s");

    for id in &ids {
        let rec = a.get(*id).await.expect("get").expect("stored");
        assert_eq!(rec.state, SagaState::Completed);
    }
    {
        let p = lock(&probe);
        assert_eq!(p.calls.len(), SAGAS * 3);
        assert!(
            p.calls.values().all(|&n| n == 1),
            "a step ran twice although no orchestrator died: {:?}",
            p.calls.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
        );
        let (by_a, by_b) = (
            p.by_orchestrator.get("A").copied().unwrap_or(0),
            p.by_orchestrator.get("B").copied().unwrap_or(0),
        );
        assert!(
            by_a > 0 && by_b > 0,
            "both orchestrators worked: A {by_a}, B {by_b}"
        );
        println!("steps run by A: {by_a}, by B: {by_b}");
    }
    pool_a.close().await;
    pool_b.close().await;
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn postgres_saga_round_trip_with_compensation() {
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = common::pg_pool(&url, 5).await;
    let undone = Arc::new(Mutex::new(Vec::new()));
    let u = undone.clone();
    let saga = Saga::<u32>::builder("pg-comp")
        .step("charge", |ctx| async move {
            Ok::<_, StepError>(*ctx.data() * 100)
        })
        .compensate(move |ctx| {
            let u = u.clone();
            async move {
                let cents: Option<u32> = ctx.own_output()?;
                u.lock().unwrap_or_else(|e| e.into_inner()).push(cents);
                Ok(())
            }
        })
        .step("ship", |_ctx| async move {
            Err::<(), _>(StepError::permanent("no courier"))
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(PostgresSagaStore::new(pool.clone()))
        .register(&saga)
        .build()
        .expect("orchestrator");
    let h = orch.start(&saga, 7).await.expect("start");
    let id = h.id();
    assert_eq!(h.wait().await.expect("saga"), SagaState::Compensated);
    assert_eq!(
        *undone.lock().unwrap_or_else(|e| e.into_inner()),
        [Some(700)]
    );
    let listed = orch
        .list(Some(SagaState::Compensated), 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let kinds: Vec<_> = listed[0].log.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        [
            "step_started",
            "step_succeeded",
            "step_started",
            "step_failed",
            "compensation_started",
            "compensation_succeeded",
            "compensated"
        ]
    );
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}
