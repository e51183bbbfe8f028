//! One conformance suite, run against the in-memory, SQLite and PostgreSQL
//! event stores.

mod common;

use msp_saga::eventstore::{
    Aggregate, EventStore, EventStoreError, ExpectedVersion, MemoryEventStore, NewEvent,
    Projection, RecordedEvent, Snapshot, SnapshotPolicy, fold_aggregate, load_aggregate,
    save_aggregate,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn ev(n: i64) -> NewEvent {
    NewEvent::new("N", n.into())
}

fn conflict(r: Result<impl std::fmt::Debug, EventStoreError>) -> (ExpectedVersion, u64) {
    match r {
        Err(EventStoreError::Concurrency(c)) => (c.expected, c.actual),
        other => panic!("expected a concurrency error, got {other:?}"),
    }
}

/// Remembers positions; generic over the store's transaction type.
#[derive(Debug, Default)]
struct Collect {
    name: String,
    seen: Vec<u64>,
    fail_at: Option<u64>,
}

impl<Tx: Send + ?Sized> Projection<Tx> for Collect {
    fn name(&self) -> &str {
        &self.name
    }
    async fn apply(&mut self, _tx: &mut Tx, e: &RecordedEvent) -> Result<(), msp_core::BoxError> {
        if self.fail_at == Some(e.position) {
            return Err("injected projection failure".into());
        }
        self.seen.push(e.position);
        Ok(())
    }
    async fn reset(&mut self, _tx: &mut Tx) -> Result<(), msp_core::BoxError> {
        self.seen.clear();
        Ok(())
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Ledger {
    balance: i64,
    entries: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum LedgerEvent {
    Credited(i64),
    Debited(i64),
}

impl Aggregate for Ledger {
    type Event = LedgerEvent;
    fn apply(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::Credited(n) => {
                self.balance += n;
                self.entries.push(n);
            }
            LedgerEvent::Debited(n) => {
                self.balance -= n;
                self.entries.push(-n);
            }
        }
    }
}

async fn conformance<S: EventStore>(store: &S) -> TestResult
where
    Collect: Projection<S::Tx>,
{
    // Expected versions.
    let r = store
        .append("a", ExpectedVersion::NoStream, vec![ev(1)])
        .await?;
    assert_eq!(r.version, 1);
    let (exp, actual) = conflict(
        store
            .append("a", ExpectedVersion::NoStream, vec![ev(9)])
            .await,
    );
    assert_eq!((exp, actual), (ExpectedVersion::NoStream, 1));
    let r = store
        .append("a", ExpectedVersion::Exact(1), vec![ev(2), ev(3)])
        .await?;
    assert_eq!(r.version, 3);
    assert_eq!(r.positions.len(), 2);
    assert!(r.positions[0] < r.positions[1]);
    assert_eq!(
        conflict(
            store
                .append("a", ExpectedVersion::Exact(1), vec![ev(9)])
                .await
        ),
        (ExpectedVersion::Exact(1), 3)
    );
    assert_eq!(
        conflict(
            store
                .append("a", ExpectedVersion::Exact(5), vec![ev(9)])
                .await
        ),
        (ExpectedVersion::Exact(5), 3),
        "no version gaps"
    );
    assert_eq!(
        store
            .append("a", ExpectedVersion::Any, vec![ev(4)])
            .await?
            .version,
        4
    );
    assert_eq!(
        store
            .append("b", ExpectedVersion::Exact(0), vec![ev(10)])
            .await?
            .version,
        1
    );
    assert_eq!(
        store
            .append("b", ExpectedVersion::Exact(1), vec![])
            .await?
            .version,
        1,
        "empty append only checks"
    );
    assert!(
        store
            .append("b", ExpectedVersion::Exact(7), vec![])
            .await
            .is_err()
    );

    // Reading streams.
    let a = store.read_stream("a", 0).await?;
    assert_eq!(
        a.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let payloads: Vec<i64> = a.iter().map(|e| e.decode()).collect::<Result<_, _>>()?;
    assert_eq!(payloads, vec![1, 2, 3, 4], "nothing from rejected appends");
    assert_eq!(store.read_stream("a", 2).await?.len(), 2);
    assert_eq!(store.stream_version("a").await?, 4);
    assert_eq!(store.stream_version("nope").await?, 0);
    assert!(store.read_stream("nope", 0).await?.is_empty());
    assert_eq!(a[0].event_type, "N");
    assert_eq!(a[0].metadata, serde_json::json!({}));

    // The global order.
    let all = store.read_all(0, 100).await?;
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let streams: Vec<&str> = all.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, vec!["a", "a", "a", "a", "b"]);
    let tail = store.read_all(all[1].position, 2).await?;
    assert_eq!(
        tail.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![all[2].position, all[3].position]
    );

    // Snapshots: newer wins.
    let snap = |v: u64| Snapshot {
        stream_id: "a".into(),
        version: v,
        state: serde_json::json!({ "v": v }),
    };
    store.save_snapshot(snap(3)).await?;
    store.save_snapshot(snap(2)).await?;
    assert_eq!(store.load_snapshot("a").await?.map(|s| s.version), Some(3));
    assert_eq!(store.load_snapshot("b").await?, None);

    // Projections: batches, durable checkpoint, failure, replay.
    let mut p = Collect {
        name: "collect".into(),
        ..Collect::default()
    };
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    let first = store.run_projection(&mut p, 2).await?;
    assert_eq!((first.processed, first.checkpoint), (2, positions[1]));
    assert_eq!(store.checkpoint("collect").await?, positions[1]);
    p.fail_at = Some(positions[3]);
    let err = store.run_projection(&mut p, 10).await;
    match err {
        Err(EventStoreError::Projection { position, .. }) => assert_eq!(position, positions[3]),
        other => panic!("expected a projection error, got {other:?}"),
    }
    assert!(
        store.checkpoint("collect").await? < positions[3],
        "the failing event is not checkpointed"
    );
    p.fail_at = None;
    // A fresh instance resumes from the durable checkpoint.
    let mut resumed = Collect {
        name: "collect".into(),
        ..Collect::default()
    };
    let cp = store.checkpoint("collect").await?;
    while !store.run_projection(&mut resumed, 10).await?.is_idle() {}
    let expect: Vec<u64> = positions.iter().copied().filter(|&x| x > cp).collect();
    assert_eq!(resumed.seen, expect);
    assert_eq!(store.checkpoint("collect").await?, positions[4]);
    // Replay from scratch.
    store.reset_projection(&mut resumed).await?;
    assert_eq!(store.checkpoint("collect").await?, 0);
    while !store.run_projection(&mut resumed, 2).await?.is_idle() {}
    assert_eq!(
        resumed.seen, positions,
        "replay sees every event once, in order"
    );

    // Aggregates: snapshot + later events == full fold.
    let mut ledger = load_aggregate::<Ledger, _>(store, "ledger").await?;
    for i in 0..9 {
        let events = vec![LedgerEvent::Credited(i * 10), LedgerEvent::Debited(i)];
        save_aggregate(
            store,
            "ledger",
            &mut ledger,
            events,
            SnapshotPolicy::Every(5),
        )
        .await?;
    }
    assert_eq!(ledger.version, 18);
    let loaded = load_aggregate::<Ledger, _>(store, "ledger").await?;
    let folded = fold_aggregate::<Ledger, _>(store, "ledger").await?;
    assert_eq!(loaded.snapshot_version, Some(16), "snapshots at 6, 10, 16");
    assert_eq!(folded.snapshot_version, None);
    assert_eq!(loaded.state, folded.state);
    assert_eq!(loaded.version, folded.version);
    assert_eq!(loaded.state, ledger.state);
    assert_eq!(folded.state.balance, (0..9).map(|i| i * 9).sum::<i64>());
    // A stale writer loses.
    let mut stale = load_aggregate::<Ledger, _>(store, "ledger").await?;
    stale.version = 17;
    let r = save_aggregate(
        store,
        "ledger",
        &mut stale,
        vec![LedgerEvent::Credited(1)],
        SnapshotPolicy::Never,
    )
    .await;
    assert_eq!(conflict(r), (ExpectedVersion::Exact(17), 18));
    Ok(())
}

/// Several writers append with the same expected version at once: exactly
/// one wins.
async fn racing_exact_appends<S: EventStore + 'static>(store: Arc<S>) -> TestResult {
    store
        .append("race", ExpectedVersion::NoStream, vec![ev(0)])
        .await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .append("race", ExpectedVersion::Exact(1), vec![ev(i), ev(i)])
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await? {
            Ok(r) => {
                won += 1;
                assert_eq!(r.version, 3);
            }
            Err(EventStoreError::Concurrency(c)) => assert_eq!(c.actual, 3),
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins");
    let events = store.read_stream("race", 0).await?;
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1].payload, events[2].payload,
        "the winner's two events, nobody else's"
    );
    Ok(())
}

#[tokio::test]
async fn memory_conformance() -> TestResult {
    conformance(&MemoryEventStore::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_racing_exact_appends() -> TestResult {
    racing_exact_appends(Arc::new(MemoryEventStore::new())).await
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use msp_saga::eventstore::SqliteEventStore;

    async fn store()
    -> Result<(SqliteEventStore, tempfile::TempDir), Box<dyn std::error::Error + Send + Sync>> {
        let (pool, dir) = crate::common::sqlite_file_pool("events.db").await?;
        Ok((SqliteEventStore::new(pool), dir))
    }

    #[tokio::test]
    async fn sqlite_conformance() -> TestResult {
        let (s, _dir) = store().await?;
        conformance(&s).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_racing_exact_appends() -> TestResult {
        let (s, _dir) = store().await?;
        racing_exact_appends(Arc::new(s)).await
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use msp_core::testing::{Backend, backend};
    use msp_saga::eventstore::PostgresEventStore;

    /// A migrated pool on a fresh schema (the schema is left behind).
    async fn pg_pool(url: &str) -> sqlx::PgPool {
        crate::common::pg_pool(url, 10).await.0
    }

    #[tokio::test]
    async fn postgres_conformance() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        conformance(&PostgresEventStore::new(pg_pool(&url).await)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_racing_exact_appends() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        racing_exact_appends(Arc::new(PostgresEventStore::new(pg_pool(&url).await))).await
    }

    /// The loser waits on the unique index while the winner's transaction
    /// is open, then gets a typed conflict naming the actual version; its
    /// own transaction stays usable.
    #[tokio::test]
    async fn postgres_conflict_while_winner_is_uncommitted() -> TestResult {
        let Some(url) = backend(Backend::Postgres) else {
            return Ok(());
        };
        let pool = pg_pool(&url).await;
        let store = PostgresEventStore::new(pool.clone());
        store
            .append("s", ExpectedVersion::NoStream, vec![ev(1)])
            .await?;

        let mut winner = pool.begin().await?;
        PostgresEventStore::append_in(&mut winner, "s", ExpectedVersion::Exact(1), vec![ev(2)])
            .await?;
        let loser = tokio::spawn({
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await?;
                // Reads version 1 (the winner is uncommitted), then blocks
                // on the winner's index entry for version 2.
                let r = PostgresEventStore::append_in(
                    &mut tx,
                    "s",
                    ExpectedVersion::Exact(1),
                    vec![ev(3), ev(4)],
                )
                .await;
                let still_usable: i64 = sqlx::query_scalar("SELECT 1::int8")
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((r, still_usable))
            }
        });
        // Let the loser reach the insert.
        for _ in 0..100 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO msp_events%'",
            )
            .fetch_one(&pool)
            .await?;
            if waiting > 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        winner.commit().await?;
        let (r, usable) = loser.await??;
        assert_eq!(usable, 1);
        assert_eq!(conflict(r), (ExpectedVersion::Exact(1), 2));
        let versions: Vec<u64> = store
            .read_stream("s", 0)
            .await?
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, vec![1, 2], "nothing of the loser committed");
        Ok(())
    }
}
