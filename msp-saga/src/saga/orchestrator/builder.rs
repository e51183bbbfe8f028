//! [`OrchestratorBuilder`]: an orchestrator's settings, validated by
//! [`build`](OrchestratorBuilder::build).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::{Inner, Orchestrator, OrchestratorConfigError};
use crate::saga::definition::{ErasedSaga, Saga};
use crate::saga::store::SagaStore;

/// Settings for an [`Orchestrator`], from [`Orchestrator::builder`].
#[must_use]
pub struct OrchestratorBuilder<S> {
    store: S,
    owner: Option<String>,
    lease: Duration,
    poll_interval: Duration,
    claim_batch: usize,
    max_active: usize,
    sagas: Vec<Arc<dyn ErasedSaga>>,
}

impl<S> fmt::Debug for OrchestratorBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("claim_batch", &self.claim_batch)
            .field("max_active", &self.max_active)
            .field(
                "sagas",
                &self
                    .sagas
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S> OrchestratorBuilder<S> {
    /// The defaults: 30 s lease, 1 s poll interval, claims of 64, at most
    /// 1024 sagas from recovery, a random owner id.
    pub(super) fn new(store: S) -> Self {
        OrchestratorBuilder {
            store,
            owner: None,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            claim_batch: 64,
            max_active: 1024,
            sagas: Vec::new(),
        }
    }
}

impl<S: SagaStore> OrchestratorBuilder<S> {
    /// This orchestrator's owner id in leases (default: a random UUID).
    /// Must be unique among the orchestrators sharing a store.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a claim on a saga lasts without renewal (default 30 s).
    /// A crashed orchestrator's sagas are resumed by another one after at
    /// most this long; a live one renews every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often the recovery loop looks for due or orphaned sagas
    /// (default 1 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How many sagas one claim takes at most (default 64).
    pub fn claim_batch(mut self, n: usize) -> Self {
        self.claim_batch = n;
        self
    }

    /// The most sagas this orchestrator drives at once from recovery
    /// (default 1024): claims take no more than the free slots, so busy
    /// replicas leave work to idle ones. Sagas started with
    /// [`Orchestrator::start`] always run.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n;
        self
    }

    /// Registers a definition, so sagas of that name can be started and
    /// resumed after a restart.
    pub fn register<D>(mut self, saga: &Saga<D>) -> Self
    where
        D: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.sagas.push(saga.erased());
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Orchestrator<S>, OrchestratorConfigError> {
        if self.lease < Duration::from_millis(3) {
            return Err(OrchestratorConfigError::LeaseTooShort);
        }
        if self.poll_interval.is_zero() {
            return Err(OrchestratorConfigError::ZeroPollInterval);
        }
        if self.claim_batch == 0 || self.max_active == 0 {
            return Err(OrchestratorConfigError::ZeroClaimBatch);
        }
        let mut sagas = HashMap::new();
        for s in self.sagas {
            let name = s.name().to_string();
            if sagas.insert(name.clone(), s).is_some() {
                return Err(OrchestratorConfigError::DuplicateSaga(name));
            }
        }
        let (notices, _) = broadcast::channel(1024);
        let (active_tx, _) = watch::channel(0);
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                store: self.store,
                owner: self
                    .owner
                    .unwrap_or_else(|| format!("orchestrator-{}", Uuid::new_v4())),
                lease: self.lease,
                poll_interval: self.poll_interval,
                claim_batch: self.claim_batch,
                max_active: self.max_active,
                sagas: RwLock::new(sagas),
                active: Mutex::new(HashSet::new()),
                active_count: active_tx,
                notices,
            }),
        })
    }
}
