//! Rejected reloads are counted in `msp_config_reload_errors_total`,
//! accepted ones in `msp_config_reloads_total`.

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use msp_config::{Loader, Watched};

#[derive(Debug, serde::Deserialize)]
struct Cfg {
    n: u32,
}

type Entries = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn counter(entries: &Entries, name: &str) -> u64 {
    entries
        .iter()
        .filter(|(key, ..)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "app" && l.value() == "metric")
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn reload_outcomes_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap_or_else(|e| panic!("{e}"));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("metric.yaml");
    std::fs::write(&file, "n: 1\n").unwrap_or_else(|e| panic!("{e}"));
    let cfg = Watched::<Cfg>::builder(
        Loader::new("metric")
            .dir(dir.path())
            .env_map(HashMap::new()),
    )
    .watch_files(false)
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    std::fs::write(&file, "n: x\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.reload().await.is_err());
    assert!(cfg.reload().await.is_err());
    std::fs::write(&file, "n: 2\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.reload().await.is_ok());
    assert_eq!(cfg.get().n, 2);

    // One snapshot: the debugging recorder drains counters when read.
    let entries = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&entries, "msp_config_reload_errors_total"), 2);
    assert_eq!(counter(&entries, "msp_config_reloads_total"), 1);
}
