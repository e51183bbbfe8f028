//! One service's watch: a persistent recursive watch on the service's
//! znode, re-armed and followed by a fresh list after every connection
//! loss or session expiry.

use super::{SharedSession, bounded, decode, list};
use crate::registry::{RegistryError, WatchEvent};
use msp_core::backoff::{Backoff, BackoffIter};
use msp_core::{Instance, InstanceId, ServiceName};
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client as zk;

pub(super) struct ZooKeeperWatch {
    session: Arc<SharedSession>,
    service: ServiceName,
    /// `{prefix}/{service}`.
    path: String,
    timeout: Duration,
    /// The client and watch in use; `None` = re-arm and list.
    armed: Option<(zk::Client, zk::PersistentWatcher)>,
    /// What the consumer was told: the base of the replay after a
    /// reconnection.
    sent: BTreeMap<InstanceId, Instance>,
    /// Whether the first snapshot was sent.
    listed: bool,
    pending: VecDeque<WatchEvent>,
    stale: bool,
    retry_at: Option<Instant>,
    delays: BackoffIter<SmallRng>,
    retry: Backoff,
}

impl ZooKeeperWatch {
    pub(super) fn new(
        session: Arc<SharedSession>,
        service: ServiceName,
        path: String,
        timeout: Duration,
        retry: Backoff,
    ) -> Self {
        ZooKeeperWatch {
            session,
            service,
            path,
            timeout,
            armed: None,
            sent: BTreeMap::new(),
            listed: false,
            pending: VecDeque::new(),
            stale: false,
            retry_at: None,
            delays: retry.iter(),
            retry,
        }
    }

    pub(super) async fn next_event(&mut self) -> WatchEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            if let Some(at) = self.retry_at.take() {
                tokio::time::sleep_until(at).await;
            }
            let result = match self.armed.is_some() {
                false => self.arm().await,
                true => self.receive().await,
            };
            if let Err(error) = result {
                // Dropping the watcher removes the watch (it is never polled
                // again after a terminal session event).
                self.armed = None;
                let delay = self.delays.next().unwrap_or_else(|| {
                    self.delays.reset();
                    self.retry.max_delay()
                });
                self.retry_at = Some(Instant::now() + delay);
                tracing::debug!(service = %self.service, %error, ?delay, "ZooKeeper watch failed; retrying");
                if !self.stale {
                    self.stale = true;
                    return WatchEvent::Stale(error);
                }
            }
        }
    }

    /// Adds the persistent recursive watch, then lists: the first list is
    /// a snapshot, later ones replay the difference with what was sent.
    async fn arm(&mut self) -> Result<(), RegistryError> {
        let client = self.session.client(self.timeout).await?;
        let watcher = bounded(
            self.timeout,
            "watch",
            client.watch(&self.path, zk::AddWatchMode::PersistentRecursive),
        )
        .await?;
        let listed = bounded(
            self.timeout,
            "list",
            list(&client, &self.service, &self.path),
        )
        .await?;
        self.armed = Some((client, watcher));
        self.delays.reset();
        let listed: BTreeMap<InstanceId, Instance> = listed
            .into_iter()
            .map(|instance| (instance.id().clone(), instance))
            .collect();
        if !self.listed {
            self.listed = true;
            self.stale = false;
            self.pending
                .push_back(WatchEvent::Snapshot(listed.values().cloned().collect()));
            self.sent = listed;
            return Ok(());
        }
        let gone: Vec<InstanceId> = self
            .sent
            .keys()
            .filter(|id| !listed.contains_key(*id))
            .cloned()
            .collect();
        self.pending
            .extend(gone.into_iter().map(WatchEvent::Removed));
        for (id, instance) in &listed {
            if self.sent.get(id) != Some(instance) {
                self.pending.push_back(WatchEvent::Added(instance.clone()));
            }
        }
        self.sent = listed;
        if self.stale {
            self.stale = false;
            tracing::info!(service = %self.service, instances = self.sent.len(), "ZooKeeper watch re-armed and reconciled");
            self.pending.push_back(WatchEvent::Resumed);
        }
        Ok(())
    }

    async fn receive(&mut self) -> Result<(), RegistryError> {
        let Some((client, watcher)) = self.armed.as_mut() else {
            return Ok(());
        };
        let event = watcher.changed().await;
        let client = client.clone();
        use zk::EventType as E;
        match event.event_type {
            E::Session => match event.session_state {
                // A reconnection within the session: events of persistent
                // watches may have been lost meanwhile (ZOOKEEPER-4698), so
                // list again.
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    self.armed = None;
                    self.arm().await
                }
                state => Err(RegistryError::unavailable(
                    super::BACKEND,
                    format!("ZooKeeper session {state}"),
                )),
            },
            E::NodeCreated | E::NodeDataChanged => {
                let Some(name) = self.child_name(&event.path) else {
                    return Ok(());
                };
                let read = bounded(self.timeout, "get", async {
                    match client.get_data(&event.path).await {
                        Ok((data, _)) => Ok(Some(data)),
                        Err(zk::Error::NoNode) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                match read.and_then(|data| decode(&self.service, name, &data)) {
                    Some(instance) => self.added(instance),
                    // Deleted since, or invalid: an invalid update must not
                    // leave the old instance in use.
                    None => self.removed(name),
                }
                Ok(())
            }
            E::NodeDeleted => {
                if let Some(name) = self.child_name(&event.path) {
                    self.removed(name);
                }
                Ok(())
            }
            E::NodeChildrenChanged => Ok(()),
        }
    }

    /// The instance znode name in `path` if it is a direct child of the
    /// service's znode (deeper znodes are not instances).
    fn child_name<'p>(&self, path: &'p str) -> Option<&'p str> {
        let name = path.strip_prefix(self.path.as_str())?.strip_prefix('/')?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }

    fn added(&mut self, instance: Instance) {
        if self.sent.get(instance.id()) != Some(&instance) {
            self.sent.insert(instance.id().clone(), instance.clone());
            self.pending.push_back(WatchEvent::Added(instance));
        }
    }

    fn removed(&mut self, name: &str) {
        if let Ok(id) = InstanceId::new(name)
            && self.sent.remove(&id).is_some()
        {
            self.pending.push_back(WatchEvent::Removed(id));
        }
    }
}
