//! [`LeaseFence`]: a step's own transaction on the saga store's database
//! sees whether its orchestrator still holds the saga, and on PostgreSQL
//! keeps other orchestrators from claiming it meanwhile.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use msp_saga::saga::store::StoreError;
use msp_saga::saga::{LeaseFence, Orchestrator, Saga, SagaError, SagaStore, StepError};

/// What the step saw: its fence, and the checks' outcomes.
type Seen = Arc<Mutex<Vec<Result<(), String>>>>;

fn outcome(r: Result<(), StoreError>) -> Result<(), String> {
    r.map_err(|e| match e {
        StoreError::Conflict(_) => "conflict".to_owned(),
        other => other.to_string(),
    })
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn fence_fails_once_the_saga_changed_hands_sqlite() {
    let (pool, _dir) = common::sqlite_file_pool("fence.db").await.expect("db");
    let store = msp_saga::saga::SqliteSagaStore::new(pool.clone());
    let seen: Seen = Arc::default();
    let (p, s) = (pool.clone(), seen.clone());
    let saga = Saga::<()>::builder("fenced")
        .step("write", move |ctx| {
            let (pool, seen) = (p.clone(), s.clone());
            async move {
                let fence: LeaseFence = ctx.fence().clone();
                let mut tx = pool.begin().await.map_err(StepError::retryable)?;
                let first = fence.check(&mut tx).await;
                tx.commit().await.map_err(StepError::retryable)?;
                // Another orchestrator claims the saga (its version moves on).
                sqlx::query("UPDATE msp_sagas SET owner = 'other', version = version + 1")
                    .execute(&pool)
                    .await
                    .map_err(StepError::retryable)?;
                let mut tx = pool.begin().await.map_err(StepError::retryable)?;
                let second = fence.check(&mut tx).await;
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.push(outcome(first));
                seen.push(outcome(second));
                Ok::<_, StepError>(())
            }
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(store.clone())
        .owner("me")
        .lease(Duration::from_secs(30))
        .register(&saga)
        .build()
        .expect("orchestrator");
    let handle = orch.start(&saga, ()).await.expect("start");
    let id = handle.id();
    // The orchestrator's own next write is fenced too.
    assert!(matches!(handle.wait().await, Err(SagaError::LeaseLost(x)) if x == id));
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen, vec![Ok(()), Err("conflict".to_owned())]);
    let rec = store.load(id).await.expect("load").expect("saga");
    assert_eq!(rec.owner.as_deref(), Some("other"));
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_blocks_a_takeover_until_the_effect_commits_postgres() {
    use msp_core::testing::{Backend, backend};
    let Some(url) = backend(Backend::Postgres) else {
        return;
    };
    let (pool, schema) = common::pg_pool(&url, 6).await;
    let store = msp_saga::saga::PostgresSagaStore::new(pool.clone());
    let seen: Seen = Arc::default();
    let claims: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (p, s, c, st) = (pool.clone(), seen.clone(), claims.clone(), store.clone());
    let saga = Saga::<()>::builder("fenced")
        .step("write", move |ctx| {
            let (pool, seen, claims, store) = (p.clone(), s.clone(), c.clone(), st.clone());
            async move {
                let fence = ctx.fence().clone();
                let far = i64::MAX / 2;
                let mut tx = pool.begin().await.map_err(StepError::retryable)?;
                let first = fence.check(&mut tx).await;
                // Even past the lease, no one can claim the saga while the
                // fenced transaction is open...
                let during = store.claim("other", far, far + 1, 10).await;
                tx.commit().await.map_err(StepError::retryable)?;
                // ...and once it is closed, a claim takes it.
                let after = store.claim("other", far, far + 1, 10).await;
                let mut tx = pool.begin().await.map_err(StepError::retryable)?;
                let second = fence.check(&mut tx).await;
                claims.lock().unwrap_or_else(|e| e.into_inner()).extend([
                    during.map_or(99, |v| v.len()),
                    after.map_or(99, |v| v.len()),
                ]);
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.push(outcome(first));
                seen.push(outcome(second));
                Ok::<_, StepError>(())
            }
        })
        .build()
        .expect("saga");
    let orch = Orchestrator::builder(store.clone())
        .owner("me")
        .lease(Duration::from_secs(30))
        .register(&saga)
        .build()
        .expect("orchestrator");
    let handle = orch.start(&saga, ()).await.expect("start");
    let id = handle.id();
    assert!(matches!(handle.wait().await, Err(SagaError::LeaseLost(x)) if x == id));
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen, vec![Ok(()), Err("conflict".to_owned())]);
    let claims = claims.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        claims,
        vec![0, 1],
        "claims while the fenced transaction was open, and after"
    );
    pool.close().await;
    common::drop_schema(&url, &schema).await;
}
