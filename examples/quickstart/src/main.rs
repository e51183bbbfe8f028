//! `cargo run -p quickstart [-- --port N]`: serves the quickstart app on
//! 127.0.0.1:3000 (or `PORT` / `--port`) until Ctrl-C or SIGTERM.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};

fn port() -> Result<u16, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = match args.as_slice() {
        [] => match std::env::var("PORT") {
            Ok(v) => v,
            Err(_) => return Ok(3000),
        },
        [flag, v] if flag == "--port" => v.clone(),
        [arg] if arg.starts_with("--port=") => arg["--port=".len()..].to_owned(),
        _ => {
            return Err(
                format!("unexpected arguments {args:?} (usage: quickstart [--port N])").into(),
            );
        }
    };
    Ok(value
        .parse()
        .map_err(|e| format!("bad port {value:?}: {e}"))?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=debug".into()),
        )
        .init();

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port()?));
    let metrics = quickstart::install_metrics()?;
    let app = quickstart::App::new(metrics);
    app.shutdown.listen_for_signals()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;

    println!("quickstart listening on http://{addr}  (Ctrl-C to stop)");
    println!("  curl http://{addr}/hello/world");
    println!("  curl http://{addr}/orders/1");
    println!(
        "  curl -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' http://{addr}/orders/2"
    );
    println!("  curl -i http://{addr}/health/ready");
    println!("  curl -s http://{addr}/metrics | grep msp_http_requests_total");

    let report = quickstart::serve(listener, app).await?;
    println!(
        "stopped: {} hook(s) ran, {} request(s) drained, {} abandoned",
        report.hooks.len(),
        report.drain.in_flight_at_start - report.drain.abandoned,
        report.drain.abandoned
    );
    Ok(())
}
