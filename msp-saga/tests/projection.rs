//! Projections: late commits are never skipped, read model and checkpoint
//! commit together, replay rebuilds the same read model.

mod common;

use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, Projection, RecordedEvent};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn ev(n: i64) -> NewEvent {
    NewEvent::new("N", n.into())
}

/// Remembers positions in memory.
#[derive(Debug, Default)]
struct Seen(Vec<u64>);

impl<Tx: Send + ?Sized> Projection<Tx> for Seen {
    fn name(&self) -> &str {
        "seen"
    }
    async fn apply(&mut self, _tx: &mut Tx, e: &RecordedEvent) -> Result<(), msp_core::BoxError> {
        self.0.push(e.position);
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use msp_saga::eventstore::SqliteEventStore;
    use sqlx::SqliteConnection;

    /// Sums payloads per stream in a table; fails on a chosen payload.
    #[derive(Debug)]
    struct Totals {
        fail_on: Option<i64>,
    }

    impl Projection<SqliteConnection> for Totals {
        fn name(&self) -> &str {
            "totals"
        }
        async fn apply(
            &mut self,
            tx: &mut SqliteConnection,
            e: &RecordedEvent,
        ) -> Result<(), msp_core::BoxError> {
            let n: i64 = e.decode()?;
            sqlx::query("INSERT INTO totals VALUES (?1, ?2) ON CONFLICT (stream) DO UPDATE SET total = total + ?2")
                .bind(&e.stream_id)
                .bind(n)
                .execute(&mut *tx)
                .await?;
            if self.fail_on == Some(n) {
                return Err("injected failure after writing".into());
            }
            Ok(())
        }
        async fn reset(&mut self, tx: &mut SqliteConnection) -> Result<(), msp_core::BoxError> {
            sqlx::query("DELETE FROM totals").execute(tx).await?;
            Ok(())
        }
    }

    async fn totals(pool: &sqlx::SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT stream, total FROM totals ORDER BY stream")
            .fetch_all(pool)
            .await
    }

    #[tokio::test]
    async fn sqlite_read_model_and_checkpoint_commit_together_and_replay() -> TestResult {
        let pool = crate::common::sqlite_memory_pool().await?;
        sqlx::query("CREATE TABLE totals (stream TEXT PRIMARY KEY, total INTEGER NOT NULL)")
            .execute(&pool)
            .await?;
        let store = SqliteEventStore::new(pool.clone());
        store
            .append("a", ExpectedVersion::Any, vec![ev(1), ev(2)])
            .await?;
        store
            .append("b", ExpectedVersion::Any, vec![ev(10), ev(20)])
            .await?;

        let mut p = Totals { fail_on: Some(10) };
        assert!(store.run_projection(&mut p, 100).await.is_err());
        assert!(
            totals(&pool).await?.is_empty(),
            "the failed batch left no trace in the read model"
        );
        assert_eq!(
            store.checkpoint("totals").await?,
            0,
            "nor in the checkpoint"
        );

        p.fail_on = None;
        assert_eq!(store.run_projection(&mut p, 100).await?.processed, 4);
        let built = totals(&pool).await?;
        assert_eq!(built, vec![("a".into(), 3), ("b".into(), 30)]);
        assert_eq!(
            store.run_projection(&mut p, 100).await?.processed,
            0,
            "each event once"
        );

        store.reset_projection(&mut p).await?;
        assert!(totals(&pool).await?.is_empty());
        while !store.run_projection(&mut p, 1).await?.is_idle() {}
        assert_eq!(
            totals(&pool).await?,
            built,
            "replay rebuilds the same read model"
        );
        Ok(())
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use msp_core::testing::{Backend, backend};
    use msp_saga::eventstore::PostgresEventStore;
    use sqlx::PgConnection;
    use std::sync::Arc;

    /// A migrated pool on a fresh schema (the schema is left behind).
    async fn pg_pool(url: &str) -> sqlx::PgPool {
        crate::common::pg_pool(url, 12).await.0
    }

    /// The Marten bug: the writer holding the lower position commits after
    /// the one holding the higher position, and a projection runs in
    /// between. It must wait for the gap, then see both, once each, in
    /// position order.
    #[tokio::test]
    async fn postgres_projection_does_not_skip_a_late_commit() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        let store = PostgresEventStore::new(pool.clone());

        // Writer 1 takes the lower position and holds its transaction open
        // until the barrier releases it.
        let (took_position, position_taken) = tokio::sync::oneshot::channel();
        let release = Arc::new(tokio::sync::Barrier::new(2));
        let writer1 = tokio::spawn({
            let (pool, release) = (pool.clone(), release.clone());
            async move {
                let mut tx = pool.begin().await?;
                let r = PostgresEventStore::append_in(
                    &mut tx,
                    "slow",
                    ExpectedVersion::NoStream,
                    vec![ev(1)],
                )
                .await?;
                let _ = took_position.send(r.positions[0]);
                release.wait().await;
                tx.commit().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        });
        let low = position_taken.await?;
        // Writer 2 takes a higher position and commits first.
        let high = store
            .append("fast", ExpectedVersion::NoStream, vec![ev(2)])
            .await?
            .positions[0];
        assert!(low < high);

        let mut p = Seen::default();
        let progress = store.run_projection(&mut p, 100).await?;
        assert_eq!(
            progress.processed, 0,
            "the visible event waits behind the open gap"
        );
        assert_eq!(store.checkpoint("seen").await?, 0);
        assert!(store.read_all(0, 100).await?.is_empty());

        release.wait().await;
        writer1.await??;
        let progress = store.run_projection(&mut p, 100).await?;
        assert_eq!((progress.processed, progress.checkpoint), (2, high));
        assert_eq!(p.0, vec![low, high], "both events, once each, in order");
        assert!(store.run_projection(&mut p, 100).await?.is_idle());
        Ok(())
    }

    /// The writer holding the lower position got its transaction id *after*
    /// the writer that commits first (so it is above that snapshot's
    /// `xmax` and not listed as running): still not skipped.
    #[tokio::test]
    async fn postgres_late_commit_with_younger_transaction_id_is_not_skipped() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        let store = PostgresEventStore::new(pool.clone());
        let mut early = pool.begin().await?;
        let _: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
            .fetch_one(&mut *early)
            .await?;
        let mut late = pool.begin().await?;
        let low =
            PostgresEventStore::append_in(&mut late, "late", ExpectedVersion::Any, vec![ev(1)])
                .await?
                .positions[0];
        let high =
            PostgresEventStore::append_in(&mut early, "early", ExpectedVersion::Any, vec![ev(2)])
                .await?
                .positions[0];
        assert!(low < high);
        early.commit().await?;

        let mut p = Seen::default();
        assert!(
            store.run_projection(&mut p, 100).await?.is_idle(),
            "waits for the open lower position"
        );
        assert!(
            store.run_projection(&mut p, 100).await?.is_idle(),
            "still waits on a second look"
        );
        late.commit().await?;
        store.run_projection(&mut p, 100).await?;
        assert_eq!(p.0, vec![low, high]);
        Ok(())
    }

    /// A position taken by a rolled-back transaction is skipped once no
    /// transaction that could hold it is still running.
    #[tokio::test]
    async fn postgres_rolled_back_gap_is_skipped() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        let store = PostgresEventStore::new(pool.clone());
        let mut tx = pool.begin().await?;
        let lost = PostgresEventStore::append_in(&mut tx, "x", ExpectedVersion::Any, vec![ev(1)])
            .await?
            .positions[0];
        tx.rollback().await?;
        let kept = store
            .append("y", ExpectedVersion::Any, vec![ev(2)])
            .await?
            .positions[0];
        assert!(lost < kept);

        let mut p = Seen::default();
        // Other tests' transactions may be running on this server; the gap
        // settles as soon as they end. Bounded.
        for _ in 0..1000 {
            if !store.run_projection(&mut p, 100).await?.is_idle() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(p.0, vec![kept]);
        Ok(())
    }

    /// Many concurrent writers while a projection runs: at the end it has
    /// seen every committed event exactly once, in position order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_projection_under_concurrent_writers() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        let store = PostgresEventStore::new(pool.clone());
        let mut writers = Vec::new();
        for w in 0..6 {
            let pool = pool.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..40_i64 {
                    let mut tx = pool.begin().await?;
                    PostgresEventStore::append_in(
                        &mut tx,
                        &format!("w{w}"),
                        ExpectedVersion::Any,
                        vec![ev(i)],
                    )
                    .await?;
                    tokio::task::yield_now().await;
                    if i % 7 == 3 {
                        tx.rollback().await?; // leaves gaps
                    } else {
                        tx.commit().await?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        let mut p = Seen::default();
        while writers.iter().any(|w| !w.is_finished()) {
            store.run_projection(&mut p, 7).await?;
        }
        for w in writers {
            w.await??;
        }
        let committed: Vec<i64> =
            sqlx::query_scalar("SELECT position FROM msp_events ORDER BY position")
                .fetch_all(&pool)
                .await?;
        for _ in 0..1000 {
            if p.0.len() >= committed.len() {
                break;
            }
            if store.run_projection(&mut p, 100).await?.is_idle() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let committed: Vec<u64> = committed.into_iter().map(|p| p as u64).collect();
        assert_eq!(committed.len(), 6 * (40 - 6));
        assert_eq!(
            p.0, committed,
            "every committed event exactly once, in order"
        );
        Ok(())
    }

    /// A read model in the same database commits with the checkpoint.
    #[derive(Debug)]
    struct Counts;

    impl Projection<PgConnection> for Counts {
        fn name(&self) -> &str {
            "counts"
        }
        async fn apply(
            &mut self,
            tx: &mut PgConnection,
            e: &RecordedEvent,
        ) -> Result<(), msp_core::BoxError> {
            sqlx::query("INSERT INTO counts VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1")
                .bind(&e.stream_id)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), msp_core::BoxError> {
            sqlx::query("TRUNCATE counts").execute(tx).await?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn postgres_two_runners_of_one_projection_apply_each_event_once() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        sqlx::query("CREATE TABLE counts (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            .execute(&pool)
            .await?;
        let store = PostgresEventStore::new(pool.clone());
        for i in 0..30 {
            store
                .append(&format!("s{}", i % 3), ExpectedVersion::Any, vec![ev(i)])
                .await?;
        }
        let (mut a, mut b) = (Counts, Counts);
        loop {
            let (x, y) = tokio::join!(
                store.run_projection(&mut a, 4),
                store.run_projection(&mut b, 4)
            );
            if x?.is_idle() && y?.is_idle() {
                break;
            }
        }
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT stream, n FROM counts ORDER BY stream")
                .fetch_all(&pool)
                .await?;
        let expected = vec![
            ("s0".to_owned(), 10),
            ("s1".to_owned(), 10),
            ("s2".to_owned(), 10),
        ];
        assert_eq!(counts, expected);
        store.reset_projection(&mut a).await?;
        while !store.run_projection(&mut a, 8).await?.is_idle() {}
        let replayed: Vec<(String, i64)> =
            sqlx::query_as("SELECT stream, n FROM counts ORDER BY stream")
                .fetch_all(&pool)
                .await?;
        assert_eq!(replayed, expected, "replay rebuilds the same read model");
        Ok(())
    }
}
