//! Idempotent inbox: redeliveries have no second effect, failures leave the
//! message unprocessed, concurrent duplicates serialise.

mod common;

use msp_saga::inbox::{Delivery, Inbox, InboxError};
use uuid::Uuid;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_failed_effect_leaves_message_unprocessed() -> TestResult {
    let pool = common::sqlite_memory_pool().await?;
    sqlx::query("CREATE TABLE ledger (n INTEGER)")
        .execute(&pool)
        .await?;
    let id = Uuid::now_v7();

    let failed = Inbox::handle(&pool, "c", id, |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO ledger VALUES (1)")
                .execute(&mut **tx)
                .await?;
            Err::<(), _>(sqlx::Error::Protocol("handler gave up".into()))
        })
    })
    .await;
    assert!(matches!(failed, Err(InboxError::Handler(_))));
    assert!(
        !Inbox::contains(&mut pool.acquire().await?, "c", id).await?,
        "not recorded"
    );

    let ok = Inbox::handle(&pool, "c", id, |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO ledger VALUES (1)")
                .execute(&mut **tx)
                .await
        })
    })
    .await?;
    assert!(matches!(ok, Delivery::Processed(_)));
    let again = Inbox::handle(&pool, "c", id, |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO ledger VALUES (1)")
                .execute(&mut **tx)
                .await
        })
    })
    .await?;
    assert!(again.is_duplicate());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        n, 1,
        "one effect: the failed attempt rolled back, the duplicate skipped"
    );

    let purged = Inbox::purge(
        &mut pool.acquire().await?,
        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
    )
    .await?;
    assert_eq!(purged, 1);
    Ok(())
}

/// Eight concurrent deliveries of one message on PostgreSQL: one effect.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_duplicates_have_one_effect() -> TestResult {
    let Some(url) = msp_core::testing::backend(msp_core::testing::Backend::Postgres) else {
        return Ok(());
    };
    let (pool, _schema) = common::pg_pool(&url, 10).await;
    sqlx::query("CREATE TABLE ledger (n BIGINT)")
        .execute(&pool)
        .await?;

    let id = Uuid::now_v7();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pool, barrier) = (pool.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            Inbox::handle(&pool, "billing", id, |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO ledger VALUES (1)")
                        .execute(&mut **tx)
                        .await
                })
            })
            .await
        }));
    }
    let mut processed = 0;
    for t in tasks {
        if let Delivery::Processed(_) = t.await?? {
            processed += 1;
        }
    }
    assert_eq!(processed, 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 1);
    Ok(())
}
