//! Hot reload: file edits, Kubernetes-style symlink swaps, rejected
//! reloads, validation, audit records without secrets.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{env, wait_for};
use msp_config::secret::Cipher;
use msp_config::{
    ConfigError, ConfigEvent, JsonLinesSink, Loader, ReloadOutcome, Secret, Trigger, Watched,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Cfg {
    level: String,
    workers: u32,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn file_edit_is_picked_up_and_streamed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("hot.yaml");
    write(&file, "level: info\nworkers: 2\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("hot").dir(dir.path()).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().workers, 2);
    let mut rx = cfg.subscribe();

    write(&file, "level: debug\nworkers: 2\n");
    let ev = wait_for(
        &mut rx,
        "level debug",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.level == "debug"),
    )
    .await;
    let ConfigEvent::Updated { audit, .. } = ev else {
        unreachable!()
    };
    assert!(
        matches!(&audit.trigger, Trigger::File(p) if p.ends_with("hot.yaml")),
        "{:?}",
        audit.trigger
    );
    assert_eq!(audit.changed.len(), 1);
    assert_eq!(audit.changed[0].key, "level");
    assert_eq!(audit.changed[0].old.as_deref(), Some("info"));
    assert_eq!(audit.changed[0].new.as_deref(), Some("debug"));
    assert_eq!(cfg.get().level, "debug");
    assert_eq!(cfg.load().level, "debug");

    // Nothing changed: explicit reload reports it and sends nothing.
    assert!(matches!(cfg.reload().await, Ok(ReloadOutcome::Unchanged)));
}

#[tokio::test]
async fn editor_style_write_to_temp_then_rename_is_seen() {
    // `sed -i`, vim (`backupcopy=no`), and most "atomic save" editors write
    // a temporary file next to the config and rename it over the original:
    // the watched file's inode changes and its name only appears as the
    // rename's target.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("ed.yaml");
    write(&file, "level: info\nworkers: 1\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("ed").dir(dir.path()).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rx = cfg.subscribe();

    for (n, tmp) in [(2, "sedAb12Cd"), (3, ".ed.yaml.swp"), (4, "4913")] {
        let tmp = dir.path().join(tmp);
        write(&tmp, &format!("level: info\nworkers: {n}\n"));
        std::fs::rename(&tmp, &file).unwrap_or_else(|e| panic!("{e}"));
        wait_for(
            &mut rx,
            &format!("workers {n}"),
            |e| matches!(e, ConfigEvent::Updated { value, .. } if value.workers == n),
        )
        .await;
        assert_eq!(cfg.get().workers, n);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn kubernetes_configmap_symlink_swap_is_seen() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    // The layout kubelet creates for a ConfigMap volume.
    std::fs::create_dir(d.join("..2025_01_01_00_00_00.000000001"))
        .unwrap_or_else(|e| panic!("{e}"));
    write(
        &d.join("..2025_01_01_00_00_00.000000001/k8s.yaml"),
        "level: info\nworkers: 1\n",
    );
    symlink("..2025_01_01_00_00_00.000000001", d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    symlink("..data/k8s.yaml", d.join("k8s.yaml")).unwrap_or_else(|e| panic!("{e}"));

    let cfg = Watched::<Cfg>::builder(Loader::new("k8s").dir(d).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().workers, 1);
    let mut rx = cfg.subscribe();

    // kubelet's update: new timestamped dir, `..data_tmp` symlink, atomic
    // rename over `..data`, old dir removed. `k8s.yaml` itself never changes.
    std::fs::create_dir(d.join("..2025_01_01_00_05_00.000000002"))
        .unwrap_or_else(|e| panic!("{e}"));
    write(
        &d.join("..2025_01_01_00_05_00.000000002/k8s.yaml"),
        "level: info\nworkers: 7\n",
    );
    symlink("..2025_01_01_00_05_00.000000002", d.join("..data_tmp"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(d.join("..2025_01_01_00_00_00.000000001"))
        .unwrap_or_else(|e| panic!("{e}"));

    wait_for(
        &mut rx,
        "workers 7",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.workers == 7),
    )
    .await;
    assert_eq!(cfg.get().workers, 7);
}

#[tokio::test]
async fn invalid_edit_keeps_the_last_good_value_and_reports_the_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("bad.yaml");
    write(&file, "level: info\nworkers: 3\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("bad").dir(dir.path()).env_map(HashMap::new()))
        .validate(|c: &Cfg| {
            if c.workers == 0 {
                Err("workers must be at least 1".into())
            } else {
                Ok(())
            }
        })
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rx = cfg.subscribe();

    // A type error: rejected with key, type and file:line.
    write(&file, "level: info\nworkers: many\n");
    let ev = wait_for(
        &mut rx,
        "rejection",
        |e| matches!(e, ConfigEvent::Rejected { error, .. } if error.to_string().contains("many")),
    )
    .await;
    let ConfigEvent::Rejected { error, trigger } = ev else {
        unreachable!()
    };
    assert!(matches!(trigger, Trigger::File(_)));
    assert_eq!(
        error.to_string(),
        format!(
            "invalid value for `workers`: expected an integer, found string \"many\" (from {}:2)",
            file.display()
        )
    );
    assert_eq!(cfg.get().workers, 3);

    // A syntax error: rejected too.
    write(&file, "level: [unclosed\n");
    let ev = wait_for(&mut rx, "parse rejection", |e| matches!(e, ConfigEvent::Rejected { error, .. } if matches!(**error, ConfigError::Parse { .. }))).await;
    assert!(matches!(ev, ConfigEvent::Rejected { .. }));
    assert_eq!(cfg.get().workers, 3);

    // A validation failure: rejected, and reload() returns the error.
    write(&file, "level: info\nworkers: 0\n");
    let err = cfg
        .reload()
        .await
        .err()
        .unwrap_or_else(|| panic!("workers: 0 was accepted"));
    assert_eq!(
        err.to_string(),
        "configuration rejected by validation: workers must be at least 1"
    );
    assert_eq!(cfg.get().workers, 3);

    // Fixed: accepted again.
    write(&file, "level: info\nworkers: 4\n");
    wait_for(
        &mut rx,
        "workers 4",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.workers == 4),
    )
    .await;
    assert_eq!(cfg.get().workers, 4);
}

#[tokio::test]
async fn initial_load_runs_validation() {
    let err = Watched::<Cfg>::builder(
        Loader::new("v")
            .no_files()
            .env_map(env(&[("V__LEVEL", "x"), ("V__WORKERS", "0")])),
    )
    .validate(|c: &Cfg| {
        if c.workers == 0 {
            Err("no workers".into())
        } else {
            Ok(())
        }
    })
    .start()
    .await
    .expect_err("must fail");
    assert!(matches!(err, ConfigError::Validation(_)), "{err:?}");
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct SecretCfg {
    db: SecretDb,
    note: Secret<String>,
}
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct SecretDb {
    user: String,
    password: Secret<String>,
}

#[tokio::test]
async fn audit_records_and_debug_never_show_secrets() {
    let key = Cipher::generate_key();
    let cipher = Cipher::from_text(&key).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("aud.yaml");
    let audit_path = dir.path().join("audit").join("audit.jsonl");
    std::fs::create_dir_all(audit_path.parent().unwrap_or(dir.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    let yaml = |user: &str, pw: &str, note: &str| {
        format!(
            "db:\n  user: {user}\n  password: {pw}\nnote: \"{}\"\n",
            cipher.encrypt(note)
        )
    };
    write(&file, &yaml("app", "first-PW-1", "first-NOTE-1"));
    let cfg = Watched::<SecretCfg>::builder(
        Loader::new("aud")
            .dir(dir.path())
            .env_map(env(&[("AUD_CONFIG_KEY", &key)])),
    )
    .audit(JsonLinesSink::open(&audit_path).unwrap_or_else(|e| panic!("{e}")))
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().db.password.expose(), "first-PW-1");
    assert_eq!(cfg.get().note.expose(), "first-NOTE-1");
    let mut rx = cfg.subscribe();

    write(&file, &yaml("app2", "second-PW-2", "second-NOTE-2"));
    let ev = wait_for(
        &mut rx,
        "user app2",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.db.user == "app2"),
    )
    .await;
    assert_eq!(cfg.get().db.password.expose(), "second-PW-2");

    let ConfigEvent::Updated { audit, value } = &ev else {
        unreachable!()
    };
    let keys: Vec<&str> = audit.changed.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["db.password", "db.user", "note"]);
    for c in &audit.changed {
        if c.key != "db.user" {
            assert_eq!(c.old.as_deref(), Some("[REDACTED]"), "{c:?}");
            assert_eq!(c.new.as_deref(), Some("[REDACTED]"), "{c:?}");
        }
    }
    let log = std::fs::read_to_string(&audit_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.contains(r#""key":"db.user","old":"app","new":"app2""#),
        "{log}"
    );
    let everything = format!(
        "{log}\n{ev:?}\n{audit:?}\n{audit}\n{value:?}\n{:?}\n{cfg:?}",
        cfg.get()
    );
    for secret in ["first-PW-1", "second-PW-2", "first-NOTE-1", "second-NOTE-2"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    assert!(everything.contains("[REDACTED]"));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_watching() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("drop.yaml");
    write(&file, "level: a\nworkers: 1\n");
    let cfg = Watched::<Cfg>::builder(Loader::new("drop").dir(dir.path()).env_map(HashMap::new()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rx = cfg.subscribe();
    drop(cfg);
    // The sender lives in the shared state: gone once the last handle is.
    assert!(matches!(
        rx.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ));
}
