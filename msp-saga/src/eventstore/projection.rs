//! Projections: read models built from the global event order.

use super::{EventStore, EventStoreError, RecordedEvent};
use msp_core::BoxError;
use std::future::Future;
use std::time::Duration;

/// A read model fed from the global event order.
///
/// `Tx` is what the store's projection transaction gives you
/// ([`EventStore::Tx`]): on SQLite and PostgreSQL, the connection of the
/// transaction that also stores the checkpoint, so a read model in the same
/// database moves exactly once per event. A projection whose read model
/// lives elsewhere (memory, another database) can be generic over `Tx` and
/// ignore it; it then sees an event again if the process dies between its
/// update and the checkpoint commit, so make its updates idempotent (the
/// event's `position` is a natural version).
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, NewEvent, Projection, RecordedEvent, SqliteEventStore};
/// use msp_core::BoxError;
///
/// /// Counts events per type in a table next to the events.
/// #[derive(Debug)]
/// struct TypeCounts;
///
/// impl Projection<sqlx::SqliteConnection> for TypeCounts {
///     fn name(&self) -> &str { "type-counts" }
///     async fn apply(&mut self, tx: &mut sqlx::SqliteConnection, e: &RecordedEvent) -> Result<(), BoxError> {
///         sqlx::query("INSERT INTO type_counts VALUES (?1, 1) ON CONFLICT (ty) DO UPDATE SET n = n + 1")
///             .bind(&e.event_type).execute(tx).await?;
///         Ok(())
///     }
///     async fn reset(&mut self, tx: &mut sqlx::SqliteConnection) -> Result<(), BoxError> {
///         sqlx::query("DELETE FROM type_counts").execute(tx).await?;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// msp_saga::migrate_sqlite(&pool).await?;
/// sqlx::query("CREATE TABLE type_counts (ty TEXT PRIMARY KEY, n INTEGER)").execute(&pool).await?;
/// let store = SqliteEventStore::new(pool.clone());
/// store.append("s", ExpectedVersion::Any, vec![NewEvent::new("A", 1.into()), NewEvent::new("A", 2.into())]).await?;
///
/// let mut proj = TypeCounts;
/// let progress = store.run_projection(&mut proj, 100).await?;
/// assert_eq!((progress.processed, progress.checkpoint), (2, 2));
/// assert_eq!(store.run_projection(&mut proj, 100).await?.processed, 0); // nothing new
///
/// // Replay rebuilds the same read model.
/// store.reset_projection(&mut proj).await?;
/// store.run_projection(&mut proj, 100).await?;
/// let n: i64 = sqlx::query_scalar("SELECT n FROM type_counts WHERE ty = 'A'").fetch_one(&pool).await?;
/// assert_eq!(n, 2);
/// # Ok(()) }
/// ```
pub trait Projection<Tx: ?Sized>: Send {
    /// The name its checkpoint is stored under (unique per read model).
    fn name(&self) -> &str;

    /// Applies one event, in global order.
    fn apply(
        &mut self,
        tx: &mut Tx,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Clears the read model before a replay. The default does nothing.
    fn reset(&mut self, tx: &mut Tx) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = tx;
        async { Ok(()) }
    }
}

/// What one [`EventStore::run_projection`] call did.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::ProjectionProgress;
///
/// let p = ProjectionProgress { processed: 0, checkpoint: 42 };
/// assert!(p.is_idle());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProjectionProgress {
    /// Events applied.
    pub processed: usize,
    /// The checkpoint afterwards.
    pub checkpoint: u64,
}

impl ProjectionProgress {
    /// Whether nothing was there to process.
    pub fn is_idle(&self) -> bool {
        self.processed == 0
    }
}

/// Keeps `projection` up to date until `shutdown` completes: runs batches of
/// `batch` events back to back while there are events, then polls every
/// `interval`. Errors are logged and retried at the next poll; the
/// checkpoint makes every retry resume where the last commit left off.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::{run_projection, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Projection, RecordedEvent};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Count(tokio::sync::watch::Sender<u64>);
/// impl<Tx: Send + ?Sized> Projection<Tx> for Count {
///     fn name(&self) -> &str { "count" }
///     async fn apply(&mut self, _tx: &mut Tx, _e: &RecordedEvent) -> Result<(), msp_core::BoxError> {
///         self.0.send_modify(|n| *n += 1);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryEventStore::new();
/// let (tx, mut seen) = tokio::sync::watch::channel(0);
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let runner = tokio::spawn({
///     let store = store.clone();
///     async move {
///         run_projection(&store, &mut Count(tx), 100, Duration::from_millis(10),
///             async { let _ = stopped.await; }).await
///     }
/// });
/// store.append("s", ExpectedVersion::Any, vec![NewEvent::new("A", 1.into())]).await?;
/// seen.wait_for(|n| *n == 1).await?;
/// let _ = stop.send(());
/// runner.await?;
/// # Ok(()) }
/// ```
pub async fn run_projection<S, P, F>(
    store: &S,
    projection: &mut P,
    batch: usize,
    interval: Duration,
    shutdown: F,
) where
    S: EventStore,
    P: Projection<S::Tx>,
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let wait = match store.run_projection(projection, batch).await {
            Ok(p) if p.processed >= batch.max(1) => Duration::ZERO,
            Ok(_) => interval,
            Err(e) => {
                tracing::warn!(projection = projection.name(), error = %e, "projection batch failed");
                interval
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

pub(crate) fn projection_error(name: &str, position: u64, source: BoxError) -> EventStoreError {
    EventStoreError::Projection {
        name: name.to_owned(),
        position,
        source,
    }
}
