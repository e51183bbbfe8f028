//! The config server over real git repositories made with the `git`
//! program: labels as branches, tags and commits, the commit id as
//! `version`, a commit pushed to a watching client through the change
//! stream, and a clone that keeps serving when its remote goes away.

#![cfg(all(feature = "git", feature = "http"))]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use common::{get_json, serve, wait_for};
use msp_config::remote::{HttpSource, Remote};
use msp_config::server::{ConfigServer, GitBackend};
use msp_config::{ConfigEvent, Loader, Trigger, Watched};

/// Runs `git` in `dir` with a fixed identity; returns its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=msp", "-c", "user.email=msp@example.com"])
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e} (is git installed?)"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes `files` and commits them; returns the commit id.
fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn new_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    git(dir, &["init", "-q", "-b", "main"]);
}

#[tokio::test]
async fn serves_branches_tags_and_commits_with_the_commit_id_as_version() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = tmp.path().join("config-repo");
    new_repo(&repo);
    let c1 = commit(
        &repo,
        &[
            ("shop.yaml", "greeting: one\ndb:\n  pool: 5\n"),
            ("application.yaml", "region: eu\n"),
        ],
        "one",
    );
    git(&repo, &["tag", "-a", "v1", "-m", "release 1"]);
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    let c2 = commit(
        &repo,
        &[("shop-prod.yaml", "greeting: feature\n")],
        "feature",
    );
    git(&repo, &["checkout", "-q", "main"]);
    let c3 = commit(
        &repo,
        &[("shop.yaml", "greeting: three\ndb:\n  pool: 7\n")],
        "three",
    );

    let backend = GitBackend::open(&repo)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (addr, _server) =
        serve(Router::new().fallback_service(ConfigServer::with_backend(backend))).await;
    let url = |path: &str| format!("http://{addr}/{path}");

    // A branch: its head commit; `version` is the commit id.
    let (status, body) = get_json(&url("shop/prod/main"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let uri = repo.display().to_string();
    assert_eq!(
        body,
        serde_json::json!({
            "name": "shop", "profiles": ["prod"], "label": "main",
            "version": c3, "state": null,
            "propertySources": [
                {"name": format!("{uri}/shop.yaml"), "source": {"db.pool": 7, "greeting": "three"}},
                {"name": format!("{uri}/application.yaml"), "source": {"region": "eu"}}
            ]
        })
    );
    // Another branch, with a profile file only it has.
    let (_, body) = get_json(&url("shop/prod/feature"), &[]).await;
    assert_eq!(body["version"], c2.as_str());
    assert_eq!(body["propertySources"][0]["source"]["greeting"], "feature");
    // An annotated tag, peeled to its commit.
    let (_, body) = get_json(&url("shop/prod/v1"), &[]).await;
    assert_eq!(body["version"], c1.as_str());
    assert_eq!(body["propertySources"][0]["source"]["greeting"], "one");
    // A commit id, full or abbreviated.
    for id in [c1.as_str(), &c1[..8]] {
        let (status, body) = get_json(&url(&format!("shop/prod/{id}")), &[]).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["version"], c1.as_str());
        assert_eq!(body["label"], id);
    }
    // No label: HEAD (main).
    let (_, body) = get_json(&url("shop/prod"), &[]).await;
    assert_eq!(body["version"], c3.as_str());
    // Unknown labels and path tricks.
    for path in [
        "shop/prod/nope",
        "shop/prod/deadbeef",
        "shop/prod/..",
        "shop/prod/HEAD~1",
    ] {
        let (status, body) = get_json(&url(path), &[]).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
    }
}

#[derive(Debug, serde::Deserialize)]
struct Shop {
    greeting: String,
}

#[tokio::test]
async fn a_commit_reaches_a_client_through_the_change_stream_without_polling() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = tmp.path().join("config-repo");
    new_repo(&repo);
    commit(&repo, &[("shop.yaml", "greeting: before\n")], "one");
    let backend = GitBackend::open(&repo)
        .refresh_interval(Duration::from_millis(50))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let server = ConfigServer::with_backend(backend).default_label("main");
    // Counts the client's plain fetches (not its stream): the first is its
    // start, the second the refetch its stream's first event causes. After
    // that the stream is open and has sent the state before the commit.
    let (fetches, mut fetched) = tokio::sync::watch::channel(0_usize);
    let count = axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let is_stream = req
                .headers()
                .get(http::header::ACCEPT)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if !is_stream {
                fetches.send_modify(|n| *n += 1);
            }
            next.run(req)
        },
    );
    let (addr, _server) = serve(Router::new().nest_service("/config", server).layer(count)).await;

    // Polling once an hour: only the change stream can bring the commit in time.
    let source = HttpSource::new(format!("http://{addr}/config"), "shop", "default")
        .poll_interval(Duration::from_secs(3600));
    let cfg = Watched::<Shop>::builder(
        Loader::new("shop")
            .no_files()
            .env_map(HashMap::new())
            .remote(Remote::new(source)),
    )
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.get().greeting, "before");
    let mut rx = cfg.subscribe();

    // The commit lands only once the client's stream is open and has
    // delivered its first event: then only a change event can bring it.
    let opened = tokio::time::timeout(Duration::from_secs(10), fetched.wait_for(|n| *n >= 2))
        .await
        .map(|r| r.is_ok());
    assert_eq!(
        opened,
        Ok(true),
        "the client's stream never opened (fetches: {})",
        *fetched.borrow()
    );
    let started = std::time::Instant::now();
    let id = commit(&repo, &[("shop.yaml", "greeting: after\n")], "two");
    let ev = wait_for(
        &mut rx,
        "the new greeting",
        |e| matches!(e, ConfigEvent::Updated { value, .. } if value.greeting == "after"),
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "commit {id} reached the client's Watched<T> in {took:?} (git refresh interval 50 ms)"
    );
    let ConfigEvent::Updated { audit, .. } = ev else {
        unreachable!()
    };
    assert!(
        matches!(&audit.trigger, Trigger::Remote(name) if name.contains("/config/shop/default")),
        "{:?}",
        audit.trigger
    );
}

#[tokio::test]
async fn a_clone_keeps_serving_the_last_good_commit_when_the_remote_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let origin = tmp.path().join("origin.git");
    std::fs::create_dir_all(&origin).unwrap_or_else(|e| panic!("{e}"));
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let work = tmp.path().join("work");
    new_repo(&work);
    git(
        &work,
        &["remote", "add", "origin", &origin.display().to_string()],
    );
    let c1 = commit(&work, &[("shop.yaml", "greeting: one\n")], "one");
    git(&work, &["push", "-q", "origin", "main"]);

    let url = format!("file://{}", origin.display());
    // Refreshed by hand below: an interval of an hour keeps the thread out of the way.
    let backend = GitBackend::clone_from(&url, tmp.path().join("clone"))
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (addr, _server) =
        serve(Router::new().fallback_service(ConfigServer::with_backend(backend.clone()))).await;
    let env_url = format!("http://{addr}/shop/default/main");
    let (status, body) = get_json(&env_url, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], c1.as_str());
    assert_eq!(
        body["propertySources"][0]["name"],
        format!("{url}/shop.yaml").as_str()
    );

    // A pushed commit and a tag arrive with the next fetch.
    let c2 = commit(&work, &[("shop.yaml", "greeting: two\n")], "two");
    git(&work, &["tag", "v2"]);
    git(&work, &["push", "-q", "origin", "main", "v2"]);
    backend.refresh().unwrap_or_else(|e| panic!("{e}"));
    assert!(backend.status().last_fetch.is_some());
    let (_, body) = get_json(&env_url, &[]).await;
    assert_eq!(body["version"], c2.as_str());
    assert_eq!(body["propertySources"][0]["source"]["greeting"], "two");
    let (_, body) = get_json(&format!("http://{addr}/shop/default/v2"), &[]).await;
    assert_eq!(body["version"], c2.as_str());

    // The remote disappears: the fetch fails, is reported, and the last
    // good commit is still served.
    std::fs::rename(&origin, tmp.path().join("gone.git")).unwrap_or_else(|e| panic!("{e}"));
    let err = backend.refresh().expect_err("the fetch must fail");
    let status = backend.status();
    assert_eq!(status.failures, 1, "{status:?}");
    assert_eq!(status.last_error, Some(err.to_string()));
    let (code, body) = get_json(&env_url, &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["version"], c2.as_str());
    assert_eq!(body["propertySources"][0]["source"]["greeting"], "two");

    // Back again: the next fetch succeeds and clears the error.
    std::fs::rename(tmp.path().join("gone.git"), &origin).unwrap_or_else(|e| panic!("{e}"));
    backend.refresh().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(backend.status().failures, 0);
}
