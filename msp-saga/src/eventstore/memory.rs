//! The in-memory event store (tests, prototypes).

use super::projection::projection_error;
use super::{
    AppendResult, ConcurrencyError, EventStore, EventStoreError, ExpectedVersion, NewEvent,
    Projection, ProjectionProgress, RecordedEvent, Snapshot,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
struct Inner {
    events: Vec<RecordedEvent>,
    streams: HashMap<String, Vec<usize>>,
    snapshots: HashMap<String, Snapshot>,
    checkpoints: HashMap<String, u64>,
}

/// An event store in process memory; clones share the same events.
///
/// Positions are assigned under one lock, so [`read_all`](EventStore::read_all)
/// never needs to wait for a gap. Projections get `()` as their transaction;
/// the checkpoint advances after each applied event.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), msp_saga::eventstore::EventStoreError> {
/// let store = MemoryEventStore::new();
/// store.append("cart-1", ExpectedVersion::NoStream, vec![NewEvent::new("Added", "apple".into())]).await?;
/// assert_eq!(store.stream_version("cart-1").await?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryEventStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryEventStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent even if a holder panicked: every
        // mutation below completes before the guard drops.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_micros_time() -> SystemTime {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
}

impl EventStore for MemoryEventStore {
    type Tx = ();

    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let mut inner = self.lock();
        let current = inner.streams.get(stream_id).map_or(0, |v| v.len() as u64);
        if !expected.matches(current) {
            return Err(ConcurrencyError {
                stream: stream_id.to_owned(),
                expected,
                actual: current,
            }
            .into());
        }
        let recorded_at = now_micros_time();
        let mut positions = Vec::with_capacity(events.len());
        let mut version = current;
        for e in events {
            version += 1;
            let index = inner.events.len();
            let position = index as u64 + 1;
            inner.events.push(RecordedEvent {
                position,
                stream_id: stream_id.to_owned(),
                version,
                id: e.id,
                event_type: e.event_type,
                payload: e.payload,
                metadata: e.metadata,
                recorded_at,
            });
            inner
                .streams
                .entry(stream_id.to_owned())
                .or_default()
                .push(index);
            positions.push(position);
        }
        Ok(AppendResult { version, positions })
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let inner = self.lock();
        Ok(inner
            .streams
            .get(stream_id)
            .map(|idx| {
                idx.iter()
                    .skip(usize::try_from(after_version).unwrap_or(usize::MAX))
                    .filter_map(|&i| inner.events.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, EventStoreError> {
        Ok(self
            .lock()
            .streams
            .get(stream_id)
            .map_or(0, |v| v.len() as u64))
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let inner = self.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(inner
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), EventStoreError> {
        let mut inner = self.lock();
        let newer = inner
            .snapshots
            .get(&snapshot.stream_id)
            .is_none_or(|s| s.version < snapshot.version);
        if newer {
            inner.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, EventStoreError> {
        Ok(self.lock().snapshots.get(stream_id).cloned())
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, EventStoreError> {
        Ok(self
            .lock()
            .checkpoints
            .get(projection)
            .copied()
            .unwrap_or(0))
    }

    async fn run_projection<P: Projection<()>>(
        &self,
        projection: &mut P,
        limit: usize,
    ) -> Result<ProjectionProgress, EventStoreError> {
        let name = projection.name().to_owned();
        let mut checkpoint = self.checkpoint(&name).await?;
        let events = self.read_all(checkpoint, limit).await?;
        let mut processed = 0;
        for e in &events {
            projection
                .apply(&mut (), e)
                .await
                .map_err(|err| projection_error(&name, e.position, err))?;
            checkpoint = e.position;
            processed += 1;
            self.lock().checkpoints.insert(name.clone(), checkpoint);
        }
        Ok(ProjectionProgress {
            processed,
            checkpoint,
        })
    }

    async fn reset_projection<P: Projection<()>>(
        &self,
        projection: &mut P,
    ) -> Result<(), EventStoreError> {
        let name = projection.name().to_owned();
        projection
            .reset(&mut ())
            .await
            .map_err(|err| projection_error(&name, 0, err))?;
        self.lock().checkpoints.insert(name, 0);
        Ok(())
    }
}
