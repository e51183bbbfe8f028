use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::{NewSaga, SagaStore, StoreError, Transition};
use crate::saga::log::{LogEntry, SagaRecord, SagaState};

/// A [`SagaStore`] in process memory, for tests and single-process demos.
///
/// It obeys the same version, owner and lease rules as the SQL stores (it
/// passes the same conformance suite) but loses everything when the
/// process exits. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemorySagaStore {
    sagas: Arc<Mutex<HashMap<Uuid, SagaRecord>>>,
}

impl MemorySagaStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, SagaRecord>> {
        // A panic while holding the lock cannot leave a half-applied write:
        // every write is computed first and applied with plain assignments.
        self.sagas.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SagaStore for MemorySagaStore {
    async fn create(&self, saga: NewSaga) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&saga.id) {
            return Err(StoreError::Duplicate(saga.id));
        }
        let log = saga
            .events
            .into_iter()
            .enumerate()
            .map(|(i, event)| LogEntry {
                seq: i as i64 + 1,
                at: saga.now,
                event,
            })
            .collect();
        map.insert(
            saga.id,
            SagaRecord {
                id: saga.id,
                name: saga.name,
                state: saga.state,
                data: saga.data,
                version: 1,
                owner: saga.owner,
                lease_until: saga.lease_until,
                due_at: saga.due_at,
                created_at: saga.now,
                updated_at: saga.now,
                log,
            },
        );
        Ok(())
    }

    async fn append(&self, t: Transition) -> Result<i64, StoreError> {
        let mut map = self.lock();
        let rec = map.get_mut(&t.id).ok_or(StoreError::NotFound(t.id))?;
        if rec.version != t.expected_version || rec.owner != t.expected_owner {
            return Err(StoreError::Conflict(t.id));
        }
        if rec.log.last().map_or(0, |e| e.seq) + 1 != t.first_seq {
            return Err(StoreError::Conflict(t.id));
        }
        rec.version += 1;
        rec.state = t.state;
        rec.owner = t.owner;
        rec.lease_until = t.lease_until;
        rec.due_at = t.due_at;
        rec.updated_at = t.now;
        for (i, event) in t.events.into_iter().enumerate() {
            rec.log.push(LogEntry {
                seq: t.first_seq + i as i64,
                at: t.now,
                event,
            });
        }
        Ok(rec.version)
    }

    async fn renew(
        &self,
        id: Uuid,
        owner: &str,
        version: i64,
        lease_until: i64,
    ) -> Result<(), StoreError> {
        let mut map = self.lock();
        let rec = map.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        if rec.version != version || rec.owner.as_deref() != Some(owner) {
            return Err(StoreError::Conflict(id));
        }
        rec.lease_until = lease_until;
        Ok(())
    }

    async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let mut map = self.lock();
        let mut due: Vec<&mut SagaRecord> = map
            .values_mut()
            .filter(|r| r.state.is_active() && r.lease_until < now && r.due_at <= now)
            .collect();
        due.sort_by_key(|r| (r.due_at, r.id));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|r| {
                r.owner = Some(owner.to_owned());
                r.lease_until = lease_until;
                r.version += 1;
                r.updated_at = now;
                r.clone()
            })
            .collect())
    }

    async fn load(&self, id: Uuid) -> Result<Option<SagaRecord>, StoreError> {
        Ok(self.lock().get(&id).cloned())
    }

    async fn list(
        &self,
        state: Option<SagaState>,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let map = self.lock();
        let mut all: Vec<&SagaRecord> = map
            .values()
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect();
        all.sort_by_key(|r| (r.created_at, r.id));
        Ok(all.into_iter().take(limit).cloned().collect())
    }
}
