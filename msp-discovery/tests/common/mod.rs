//! Helpers shared by the ZooKeeper tests.

pub(crate) mod private_zookeeper;
pub(crate) mod proxy;
