//! One registration's lease: a detached session of its own holding the
//! instance's ephemeral znode.

use super::{bounded, is_session_end, open_session};
use crate::registry::{Lease, RegistryError};
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client as zk;

/// How many times [`ZooKeeperLease::acquire`] replaces a znode left by
/// another session before giving up for this attempt (the registration
/// retries with backoff).
const TAKEOVER_ATTEMPTS: usize = 3;

pub(super) struct ZooKeeperLease {
    cluster: Arc<str>,
    parent: String,
    path: String,
    data: Vec<u8>,
    ttl: Duration,
    timeout: Duration,
    client: Option<zk::Client>,
}

impl ZooKeeperLease {
    pub(super) fn new(
        cluster: Arc<str>,
        parent: String,
        path: String,
        data: Vec<u8>,
        ttl: Duration,
        timeout: Duration,
    ) -> Self {
        ZooKeeperLease {
            cluster,
            parent,
            path,
            data,
            ttl,
            timeout,
            client: None,
        }
    }

    /// The session to (re)create the znode in: the current one while it
    /// lives, else a new one whose timeout is the TTL.
    async fn session(&mut self) -> Result<zk::Client, RegistryError> {
        if let Some(client) = &self.client
            && !client.state().is_terminated()
        {
            return Ok(client.clone());
        }
        self.client = None;
        let client = open_session(&self.cluster, self.ttl, true, self.timeout).await?;
        if client.session_timeout() != self.ttl {
            tracing::warn!(
                znode = %self.path,
                requested = ?self.ttl,
                negotiated = ?client.session_timeout(),
                "ZooKeeper clamped the session timeout (the registration's TTL) to its min/maxSessionTimeout"
            );
        }
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Creates the ephemeral znode in `client`'s session, replacing one left
    /// by another session.
    async fn create(&self, client: &zk::Client) -> Result<(), zk::Error> {
        let directory = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        let mine = client.session_id().0;
        for _ in 0..TAKEOVER_ATTEMPTS {
            match client.create(&self.path, &self.data, &ephemeral).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NoNode) => client.mkdir(&self.parent, &directory).await?,
                Err(zk::Error::NodeExists) => match client.check_stat(&self.path).await? {
                    Some(stat) if stat.ephemeral_owner == mine => {
                        // Ours already (an earlier attempt whose answer was
                        // lost): make sure it holds this instance.
                        return client
                            .set_data(&self.path, &self.data, None)
                            .await
                            .map(drop);
                    }
                    Some(stat) => {
                        tracing::info!(znode = %self.path, owner = stat.ephemeral_owner, "replacing an instance znode left by another session");
                        match client.delete(&self.path, Some(stat.version)).await {
                            Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    None => {}
                },
                Err(e) => return Err(e),
            }
        }
        Err(zk::Error::NodeExists)
    }
}

impl Lease for ZooKeeperLease {
    async fn acquire(&mut self) -> Result<(), RegistryError> {
        let client = self.session().await?;
        // If the session ended meanwhile, the next attempt opens another.
        bounded(self.timeout, "create", self.create(&client)).await
    }

    async fn renew(&mut self) -> Result<(), RegistryError> {
        let Some(client) = self.client.clone() else {
            return Err(RegistryError::LeaseLost);
        };
        if client.state().is_terminated() {
            tracing::info!(znode = %self.path, session = %client.session_id(), state = %client.state(), "ZooKeeper session of the registration ended");
            self.client = None;
            return Err(RegistryError::LeaseLost);
        }
        let checked = tokio::time::timeout(self.timeout, client.check_stat(&self.path)).await;
        match checked {
            Ok(Ok(Some(stat))) if stat.ephemeral_owner == client.session_id().0 => Ok(()),
            // Deleted (an administrative deregistration) or taken over:
            // create it again in this session.
            Ok(Ok(_)) => Err(RegistryError::LeaseLost),
            Ok(Err(e)) if is_session_end(&e) => {
                self.client = None;
                Err(RegistryError::LeaseLost)
            }
            Ok(Err(e)) => Err(super::map_err(e)),
            Err(_) => Err(RegistryError::Timeout {
                backend: super::BACKEND,
                operation: "exists",
            }),
        }
    }

    async fn release(&mut self) -> Result<(), RegistryError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        if client.state().is_terminated() {
            // The session and its znode are gone already.
            return Ok(());
        }
        let deleted = bounded(self.timeout, "delete", async {
            match client.check_stat(&self.path).await? {
                Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
                    match client.delete(&self.path, Some(stat.version)).await {
                        Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(()),
                        other => other,
                    }
                }
                // Not ours (any more): nothing of this registration to
                // remove.
                _ => Ok(()),
            }
        })
        .await;
        // Dropping the last clone ends the detached session's connection;
        // the server expires the (now empty) session after its timeout.
        drop(client);
        deleted
    }
}
