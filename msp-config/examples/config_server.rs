//! Runs the config server on a directory.
//!
//! ```sh
//! cargo run -p msp-config --example config_server -- --dir ./config --port 8888 [--label main]
//! curl http://127.0.0.1:8888/shop/prod
//! curl http://127.0.0.1:8888/shop/prod/main
//! ```
//!
//! The service is mounted at the root here; in your own axum app use
//! `Router::new().nest_service("/config", ConfigServer::new(dir))`.

use axum::Router;
use msp_config::server::ConfigServer;

fn usage() -> ! {
    eprintln!("usage: config_server --dir DIR [--port N] [--label DEFAULT_LABEL]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let mut args = std::env::args().skip(1);
    let (mut dir, mut port, mut label) = (None, 8888u16, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(args.next().unwrap_or_else(|| usage())),
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--label" => label = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let Some(dir) = dir else { usage() };
    let mut server = ConfigServer::new(&dir);
    if let Some(l) = label {
        server = server.default_label(l);
    }
    let app = Router::new().fallback_service(server);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "serving {dir} on http://{}/{{application}}/{{profile}}[/{{label}}]",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
