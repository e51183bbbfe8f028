//! The etcd source against a real etcd: reload on put, rejection of a bad
//! value, and serving the last value while etcd is down (a private etcd
//! process that the test stops and restarts).
#![cfg(feature = "etcd")]

mod common;

use std::time::Duration;

use common::wait_for;
use etcd_client::Client;
use msp_config::remote::{EtcdSource, Remote, Startup};
use msp_config::{ConfigError, ConfigEvent, Loader, ReloadOutcome, Trigger, Watched};
use msp_core::backoff::{Backoff, Jitter};
use msp_core::testing::{Backend, PrivateEtcd, backend};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct Pool {
    max_size: u32,
}
#[derive(Debug, Deserialize, PartialEq)]
struct Db {
    pool: Pool,
}
#[derive(Debug, Deserialize, PartialEq)]
struct Cfg {
    name: String,
    db: Db,
}

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("/msp-config-test/{test}-{}-{nanos}/", std::process::id())
}

fn fast_retry() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(50))
        .max_delay(Duration::from_millis(300))
        .jitter(Jitter::Full)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn put(client: &mut Client, key: String, value: &str) {
    client
        .put(key, value, None)
        .await
        .unwrap_or_else(|e| panic!("etcd put: {e}"));
}

#[tokio::test]
async fn reloads_on_put_to_the_shared_etcd() {
    let Some(url) = backend(Backend::Etcd) else {
        return;
    };
    let prefix = unique_prefix("put");
    let mut client = Client::connect([url.as_str()], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    put(&mut client, format!("{prefix}name"), "shop").await;
    put(&mut client, format!("{prefix}db/pool/max_size"), "5").await;
    // Outside the prefix: ignored.
    put(
        &mut client,
        format!("{}x", prefix.trim_end_matches('/')),
        "noise",
    )
    .await;

    let source = EtcdSource::new([url.clone()], prefix.clone());
    let cfg = Watched::<Cfg>::builder(
        Loader::new("shop")
            .no_files()
            .env_map(Default::default())
            .remote(Remote::new(source).retry(fast_retry())),
    )
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().db.pool.max_size, 5);
    let mut rx = cfg.subscribe();

    put(&mut client, format!("{prefix}db/pool/max_size"), "9").await;
    let ev = wait_for(
        &mut rx,
        "max_size 9",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.db.pool.max_size == 9),
    )
    .await;
    let ConfigEvent::Updated { audit, .. } = ev else {
        unreachable!()
    };
    assert!(
        matches!(&audit.trigger, Trigger::Remote(n) if n.starts_with("etcd ")),
        "{:?}",
        audit.trigger
    );
    assert_eq!(
        audit.changed[0].origin,
        format!("etcd {url}{prefix} key {prefix}db/pool/max_size")
    );

    // A bad value is rejected with the etcd key named; 9 stays.
    put(&mut client, format!("{prefix}db/pool/max_size"), "lots").await;
    let ev = wait_for(&mut rx, "rejection", |e| {
        matches!(e, ConfigEvent::Rejected { .. })
    })
    .await;
    let ConfigEvent::Rejected { error, .. } = ev else {
        unreachable!()
    };
    assert!(
        error
            .to_string()
            .contains(&format!("key {prefix}db/pool/max_size")),
        "{error}"
    );
    assert_eq!(cfg.get().db.pool.max_size, 9);

    client
        .delete(
            prefix.clone(),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn connect(etcd: &PrivateEtcd) -> Client {
    Client::connect([etcd.endpoint()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to the private etcd: {e}"))
}

#[tokio::test]
async fn keeps_the_last_value_while_etcd_is_down_and_recovers() {
    let Some(mut etcd) = PrivateEtcd::start() else {
        return;
    };
    let mut client = connect(&etcd).await;
    let prefix = "/cfg/shop/".to_owned();
    put(&mut client, format!("{prefix}name"), "shop").await;
    put(&mut client, format!("{prefix}db/pool/max_size"), "1").await;

    let cache_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = cache_dir.path().join("etcd-cache.json");
    let remote = |url: String| {
        Remote::new(EtcdSource::new([url], prefix.clone()))
            .retry(fast_retry())
            .cache_file(&cache)
    };
    let loader = |url: String, startup| {
        Loader::new("shop")
            .no_files()
            .env_map(Default::default())
            .remote(remote(url).startup(startup))
    };
    let cfg = Watched::<Cfg>::builder(loader(etcd.endpoint(), Startup::FailFast))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rx = cfg.subscribe();
    put(&mut client, format!("{prefix}db/pool/max_size"), "2").await;
    wait_for(
        &mut rx,
        "max_size 2",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.db.pool.max_size == 2),
    )
    .await;

    // etcd stops: the value stays, an explicit reload keeps it and is not an error.
    drop(client);
    etcd.kill();
    assert!(matches!(cfg.reload().await, Ok(ReloadOutcome::Unchanged)));
    assert_eq!(cfg.get().db.pool.max_size, 2);

    // A new process starting now: fail fast, or start from the cache.
    let err = loader(etcd.endpoint(), Startup::FailFast)
        .load::<Cfg>()
        .await
        .expect_err("must fail");
    assert!(matches!(err, ConfigError::Remote { .. }), "{err:?}");
    let cached: Cfg = loader(etcd.endpoint(), Startup::UseCache)
        .load()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cached.db.pool.max_size, 2);
    assert_eq!(cfg.get().db.pool.max_size, 2);

    // etcd comes back on the same ports and data: the watch resumes.
    etcd.restart();
    let mut client = connect(&etcd).await;
    put(&mut client, format!("{prefix}db/pool/max_size"), "3").await;
    wait_for(
        &mut rx,
        "max_size 3 after restart",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.db.pool.max_size == 3),
    )
    .await;
    assert_eq!(cfg.get().db.pool.max_size, 3);
}
