//! Aggregates folded from their events, with snapshots.

use super::{AppendResult, EventStore, EventStoreError, ExpectedVersion, NewEvent, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// State rebuilt by applying a stream's events in order.
///
/// Events are typed and stored as JSON via serde; the state must be
/// serializable too, for snapshots.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::Aggregate;
///
/// #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
/// struct Counter { n: u64 }
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// enum CounterEvent { Incremented }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     fn apply(&mut self, _event: CounterEvent) { self.n += 1; }
/// }
///
/// let mut c = Counter::default();
/// c.apply(CounterEvent::Incremented);
/// assert_eq!(c.n, 1);
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync {
    /// The stream's event type.
    type Event: Serialize + DeserializeOwned + Send + Sync;

    /// Folds one event into the state. Must be deterministic: replay and
    /// snapshots rely on the same events giving the same state.
    fn apply(&mut self, event: Self::Event);
}

/// An aggregate's state and the stream version it reflects.
///
/// # Example
///
/// See [`load_aggregate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The last event applied (0: none); the expected version of the next
    /// append.
    pub version: u64,
    /// The snapshot version the load started from, if any.
    pub snapshot_version: Option<u64>,
}

/// When [`save_aggregate`] stores a snapshot.
///
/// # Example
///
/// ```
/// use msp_saga::eventstore::SnapshotPolicy;
///
/// assert!(SnapshotPolicy::Every(10).due(9, 12));
/// assert!(!SnapshotPolicy::Every(10).due(10, 19));
/// assert!(!SnapshotPolicy::Never.due(0, 1000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// No snapshots.
    #[default]
    Never,
    /// Whenever an append crosses a multiple of `n` events.
    Every(u64),
}

impl SnapshotPolicy {
    /// Whether going from version `from` to `to` crosses a snapshot point.
    pub fn due(self, from: u64, to: u64) -> bool {
        match self {
            SnapshotPolicy::Never | SnapshotPolicy::Every(0) => false,
            SnapshotPolicy::Every(n) => to / n > from / n,
        }
    }
}

fn fold<A: Aggregate>(
    mut loaded: Loaded<A>,
    events: Vec<super::RecordedEvent>,
) -> Result<Loaded<A>, EventStoreError> {
    for e in events {
        loaded.state.apply(e.decode()?);
        loaded.version = e.version;
    }
    Ok(loaded)
}

/// Loads an aggregate: its latest snapshot (if any, and if it still
/// decodes) plus the events after it. A stream without events gives
/// `A::default()` at version 0.
///
/// # Example
///
/// ```
/// # use msp_saga::eventstore::*;
/// # #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
/// # struct Counter { n: u64 }
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// # enum CounterEvent { Incremented }
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent;
/// #     fn apply(&mut self, _e: CounterEvent) { self.n += 1; }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), EventStoreError> {
/// let store = MemoryEventStore::new();
/// let mut c = load_aggregate::<Counter, _>(&store, "c-1").await?;
/// assert_eq!(c.version, 0);
/// let events = (0..5).map(|_| CounterEvent::Incremented).collect();
/// save_aggregate(&store, "c-1", &mut c, events, SnapshotPolicy::Every(2)).await?;
///
/// let again = load_aggregate::<Counter, _>(&store, "c-1").await?;
/// assert_eq!((again.state.n, again.version, again.snapshot_version), (5, 5, Some(5)));
/// # Ok(()) }
/// ```
pub async fn load_aggregate<A: Aggregate, S: EventStore>(
    store: &S,
    stream_id: &str,
) -> Result<Loaded<A>, EventStoreError> {
    let start = match store.load_snapshot(stream_id).await? {
        Some(snap) => match A::deserialize(&snap.state) {
            Ok(state) => Loaded {
                state,
                version: snap.version,
                snapshot_version: Some(snap.version),
            },
            Err(e) => {
                // An old snapshot format: fall back to the full history.
                tracing::warn!(stream = stream_id, error = %e, "ignoring a snapshot that no longer decodes");
                Loaded::default()
            }
        },
        None => Loaded::default(),
    };
    let events = store.read_stream(stream_id, start.version).await?;
    fold(start, events)
}

/// Folds the whole stream from its first event, ignoring snapshots.
///
/// # Example
///
/// ```
/// # use msp_saga::eventstore::*;
/// # #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct Counter { n: u64 }
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// # enum CounterEvent { Incremented }
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent;
/// #     fn apply(&mut self, _e: CounterEvent) { self.n += 1; }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), EventStoreError> {
/// let store = MemoryEventStore::new();
/// let mut c = load_aggregate::<Counter, _>(&store, "c").await?;
/// save_aggregate(&store, "c", &mut c, (0..3).map(|_| CounterEvent::Incremented).collect(), SnapshotPolicy::Every(2)).await?;
/// let full = fold_aggregate::<Counter, _>(&store, "c").await?;
/// assert_eq!(full.state, load_aggregate::<Counter, _>(&store, "c").await?.state);
/// # Ok(()) }
/// ```
pub async fn fold_aggregate<A: Aggregate, S: EventStore>(
    store: &S,
    stream_id: &str,
) -> Result<Loaded<A>, EventStoreError> {
    let events = store.read_stream(stream_id, 0).await?;
    fold(Loaded::default(), events)
}

/// Appends `events` expecting the stream at `loaded.version`, applies them
/// to `loaded`, and stores a snapshot when `policy` says so.
///
/// On a [`ConcurrencyError`](super::ConcurrencyError) nothing changes:
/// reload and decide again. A failed snapshot write is logged, not
/// returned (the events are committed; the next snapshot catches up).
///
/// # Example
///
/// See [`load_aggregate`].
pub async fn save_aggregate<A: Aggregate, S: EventStore>(
    store: &S,
    stream_id: &str,
    loaded: &mut Loaded<A>,
    events: Vec<A::Event>,
    policy: SnapshotPolicy,
) -> Result<AppendResult, EventStoreError> {
    let new_events = events
        .iter()
        .map(NewEvent::from_serde)
        .collect::<Result<Vec<_>, _>>()?;
    let expected = match loaded.version {
        0 => ExpectedVersion::NoStream,
        n => ExpectedVersion::Exact(n),
    };
    let result = store.append(stream_id, expected, new_events).await?;
    let from = loaded.version;
    for e in events {
        loaded.state.apply(e);
    }
    loaded.version = result.version;
    if policy.due(from, loaded.version) {
        let snapshot = serde_json::to_value(&loaded.state).map(|state| Snapshot {
            stream_id: stream_id.to_owned(),
            version: loaded.version,
            state,
        });
        let saved = match snapshot {
            Ok(s) => store.save_snapshot(s).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = saved {
            tracing::warn!(stream = stream_id, error = %e, "snapshot not saved");
        }
    }
    Ok(result)
}
