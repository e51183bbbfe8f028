//! Runs the config server on a directory or a git repository.
//!
//! ```sh
//! # a directory (label = subdirectory)
//! cargo run -p msp-config --example config_server -- --dir ./config --port 8888 [--label main]
//! curl http://127.0.0.1:8888/shop/prod
//! curl http://127.0.0.1:8888/shop/prod/main
//!
//! # a local git repository (label = branch, tag or commit; version = commit id)
//! cargo run -p msp-config --features git --example config_server -- --git ./config-repo --refresh 1s
//! # a remote, cloned into --clone-dir and fetched every --refresh
//! cargo run -p msp-config --features git --example config_server -- \
//!     --git-remote file:///srv/git/config-repo.git --clone-dir /tmp/config-clone --refresh 30s
//!
//! # watch the change stream
//! curl -N -H 'Accept: text/event-stream' http://127.0.0.1:8888/shop/prod/main
//!
//! # server-side decryption of {cipher} values, and /encrypt + /decrypt
//! export CONFIG_KEY=$(cargo run -q -p msp-config --example encrypt -- --new-key)
//! export CONFIG_ADMIN_TOKEN=change-me
//! cargo run -p msp-config --example config_server -- --dir ./config \
//!     --key-env CONFIG_KEY --crypto-token-env CONFIG_ADMIN_TOKEN
//! curl -H "Authorization: Bearer $CONFIG_ADMIN_TOKEN" -H 'Content-Type: text/plain' \
//!     http://127.0.0.1:8888/encrypt -d 's3cr3t'
//! ```
//!
//! The service is mounted at the root here; in your own axum app use
//! `Router::new().nest_service("/config", ConfigServer::new(dir))`.

use std::time::Duration;

use axum::Router;
use msp_config::secret::Cipher;
use msp_config::server::ConfigServer;

fn usage() -> ! {
    eprintln!(
        "usage: config_server (--dir DIR | --git PATH | --git-remote URL --clone-dir DIR) \
         [--refresh DURATION] [--port N] [--label DEFAULT_LABEL] \
         [--key-env VAR] [--crypto-token-env VAR]"
    );
    std::process::exit(2)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("config_server: {msg}");
    std::process::exit(1)
}

#[derive(Default)]
struct Args {
    dir: Option<String>,
    git: Option<String>,
    remote: Option<String>,
    clone_dir: Option<String>,
    refresh: Option<Duration>,
    port: u16,
    label: Option<String>,
    key_env: Option<String>,
    token_env: Option<String>,
}

fn parse() -> Args {
    let mut a = Args {
        port: 8888,
        ..Args::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--dir" => a.dir = Some(value()),
            "--git" => a.git = Some(value()),
            "--git-remote" => a.remote = Some(value()),
            "--clone-dir" => a.clone_dir = Some(value()),
            "--refresh" => {
                a.refresh = Some(humantime::parse_duration(&value()).unwrap_or_else(|_| usage()))
            }
            "--port" => a.port = value().parse().unwrap_or_else(|_| usage()),
            "--label" => a.label = Some(value()),
            "--key-env" => a.key_env = Some(value()),
            "--crypto-token-env" => a.token_env = Some(value()),
            _ => usage(),
        }
    }
    a
}

#[cfg(feature = "git")]
fn git_server(a: &Args) -> Option<(ConfigServer, String)> {
    use msp_config::server::GitBackend;
    let (builder, what) = match (&a.git, &a.remote, &a.clone_dir) {
        (Some(path), None, _) => (GitBackend::open(path), format!("git repository {path}")),
        (None, Some(url), Some(dir)) => (
            GitBackend::clone_from(url, dir),
            format!("git remote {url} (clone in {dir})"),
        ),
        (None, None, _) => return None,
        _ => usage(),
    };
    let builder = match a.refresh {
        Some(d) => builder.refresh_interval(d),
        None => builder,
    };
    let backend = builder.build().unwrap_or_else(|e| fail(e));
    Some((ConfigServer::with_backend(backend), what))
}

#[cfg(not(feature = "git"))]
fn git_server(a: &Args) -> Option<(ConfigServer, String)> {
    if a.git.is_some() || a.remote.is_some() {
        fail("built without the `git` feature: add `--features git`");
    }
    None
}

fn env_var(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| fail(format!("environment variable {var} is not set")))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let a = parse();
    let (mut server, what) = match (git_server(&a), &a.dir) {
        (Some(git), None) => git,
        (None, Some(dir)) => (ConfigServer::new(dir), format!("directory {dir}")),
        _ => usage(),
    };
    if let Some(l) = &a.label {
        server = server.default_label(l);
    }
    if let Some(var) = &a.key_env {
        let cipher =
            Cipher::from_text(&env_var(var)).unwrap_or_else(|e| fail(format!("{var}: {e}")));
        server = server.cipher(cipher);
    }
    if let Some(var) = &a.token_env {
        if a.key_env.is_none() {
            fail("--crypto-token-env needs --key-env");
        }
        server = server.crypto_endpoints(env_var(var));
    }
    let app = Router::new().fallback_service(server);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port)).await?;
    println!(
        "serving {what} on http://{}/{{application}}/{{profile}}[/{{label}}]",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
