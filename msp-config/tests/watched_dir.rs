//! Hot reload when the watched directory itself goes away: deleted and
//! recreated (a deploy that replaces the whole config directory), and the
//! defaults never replace the last good value while it is missing.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::wait_for;
use msp_config::{ConfigEvent, Loader, Watched};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Cfg {
    #[serde(default = "one")]
    workers: u32,
}

fn one() -> u32 {
    1
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_deleted_and_recreated_directory_is_watched_again() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("config");
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("svc.yaml"), "workers: 4\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("svc").dir(&dir).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().workers, 4);
    let mut rx = cfg.subscribe();

    // Deleted: the defaults (workers: 1) would load without the file; the
    // last good value stays. Recreated with a new value: the new directory
    // is watched and its file loaded.
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("svc.yaml"), "workers: 8\n");
    let seen = wait_for(
        &mut rx,
        "workers 8",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.workers != 4),
    )
    .await;
    let ConfigEvent::Updated { value, .. } = seen else {
        unreachable!()
    };
    assert_eq!(value.workers, 8, "never the defaults in between");

    // The new directory's watch works: a plain edit is seen.
    write(&dir.join("svc.yaml"), "workers: 16\n");
    wait_for(
        &mut rx,
        "workers 16",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.workers == 16),
    )
    .await;
    assert_eq!(cfg.get().workers, 16);
}

#[tokio::test]
async fn a_directory_deleted_and_not_recreated_keeps_the_last_good_value() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("config");
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("svc.yaml"), "workers: 4\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("svc").dir(&dir).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rx = cfg.subscribe();
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));

    // The deletion's events (the file, then the directory) end in a burst
    // that must not load the defaults. Bounded wait for anything the
    // watcher sends after it (ten debounce periods).
    let burst = tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await;
    assert!(
        !matches!(burst, Ok(Ok(ConfigEvent::Updated { .. }))),
        "no update while the directory is gone: {burst:?}"
    );
    assert_eq!(cfg.get().workers, 4);
}
