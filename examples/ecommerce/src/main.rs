//! `cargo run -p ecommerce`: starts the whole system on embedded defaults
//! and prints what to curl, until Ctrl-C. `cargo run -p ecommerce -- demo`:
//! starts it, tells the demo's story, and stops. `--gateway-config FILE`
//! replaces `config/gateway.yaml` (the load run in `benches/ecommerce`
//! raises the rate limits with it). `--redis URL` keeps user-service's
//! login sessions in that Redis (`--redis-prefix P`, default `ecommerce:`,
//! separates systems sharing it) instead of in memory.

use ecommerce::{System, SystemConfig};
use msp_core::BoxError;

const USAGE: &str = "usage: ecommerce [demo] [--gateway-config gateway.yaml] [--redis redis://127.0.0.1:6379] [--redis-prefix ecommerce:]";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut demo = false;
    let mut gateway_yaml = None;
    let mut config = SystemConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "demo" => demo = true,
            "--gateway-config" => {
                let path = args.next().ok_or("--gateway-config needs a file")?;
                gateway_yaml = Some(
                    std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?,
                );
            }
            "--redis" => {
                let url = args
                    .next()
                    .ok_or("--redis needs a URL (redis://host:port)")?;
                if !url.starts_with("redis://") {
                    return Err(format!("--redis {url:?}: not a redis:// URL ({USAGE})").into());
                }
                config.redis_url = Some(url);
            }
            "--redis-prefix" => {
                config.redis_prefix = args.next().ok_or("--redis-prefix needs a prefix")?;
            }
            _ => return Err(format!("unexpected argument {arg:?} ({USAGE})").into()),
        }
    }
    // The demo's story is its output; logs only for errors unless RUST_LOG.
    let default_filter = if demo {
        // Chapter 7 injects 503s on purpose: tower-http would log each one.
        "error,tower_http::trace=off"
    } else {
        "warn,ecommerce=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    if let Some(yaml) = gateway_yaml {
        config.gateway_yaml = yaml;
    }
    if demo {
        // The demo's own port, so it runs next to a running system.
        config.gateway_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let system = System::start(config).await?;
    let url = system.gateway_url();
    if demo {
        ecommerce::demo::run(&system, false).await?;
        return system.stop().await;
    }

    // The gateway's admin listener, with the dashboard and the process's
    // Prometheus recorder.
    let mut admin_url = None;
    if let Some(admin) = system.gateway().config().admin() {
        let listener = tokio::net::TcpListener::bind(admin.listen).await?;
        admin_url = Some(format!("http://{}", listener.local_addr()?));
        system.serve_dashboard(listener, true)?;
    }

    println!("ecommerce: gateway on {url}  (Ctrl-C to stop; data in target/ecommerce-data)");
    println!("  curl {url}/api/products");
    println!("  curl '{url}/api/products/search?q=lamp'");
    println!("  curl -i -X POST {url}/api/orders   # 401: needs a token or an API key");
    println!(
        "  curl -X POST {url}/api/auth/signup -H 'content-type: application/json' -d '{{\"email\":\"me@example.com\",\"password\":\"correct horse\"}}'"
    );
    println!(
        "  TOKEN=$(curl -s -X POST {url}/api/auth/login -H 'content-type: application/json' -d '{{\"email\":\"me@example.com\",\"password\":\"correct horse\"}}' | jq -r .access_token)"
    );
    println!("  curl -H \"authorization: Bearer $TOKEN\" {url}/api/orders   # your orders");
    println!(
        "  curl -X POST {url}/api/auth/refresh -H 'content-type: application/json' -d '{{\"refresh_token\":\"<refresh_token>\"}}'   # logout: same body to /api/auth/logout"
    );
    println!(
        "  curl -X POST {url}/api/orders -H 'x-api-key: demo-key' -H 'content-type: application/json' -d '{{\"sku\":\"book-42\",\"quantity\":1,\"address\":\"1 Main St\"}}'"
    );
    println!("  curl -H 'x-api-key: demo-key' '{url}/api/orders/<id>?wait_ms=5000'");
    for name in [
        "notification-service",
        "inventory-service",
        "payment-service",
    ] {
        if let Some(addr) = system.service_addr(name) {
            println!("  {name} (behind the gateway): http://{addr}");
        }
    }
    let settings = system.config_server();
    println!(
        "  config server {} serves {} (every service polls it each second):",
        settings.url(),
        settings.dir().display()
    );
    println!(
        "    curl {}/product-service/demo   # product-service's settings, as Spring Cloud Config serves them",
        settings.url()
    );
    println!(
        "    printf 'search:\\n  max_results: 1\\n' > {}/product-service-demo.yaml   # the next search finds 1 (no restart)",
        settings.dir().display()
    );
    println!(
        "    set features.search: false in {}/application.yaml   # product search answers 404 search_disabled",
        settings.dir().display()
    );
    if let Some(admin) = &admin_url {
        println!("  open {admin}/dashboard   # live: services, breakers, limits, sagas, traces");
        println!(
            "  curl -X POST {admin}/chaos/payment-service   # payment fails: watch order-service's breaker open (DELETE to recover)"
        );
        println!(
            "  curl {admin}/metrics | grep msp_http_requests_total   # every service's RED metrics"
        );
        println!(
            "  curl {admin}/upstreams   # two product-service instances: ejected, retries (the demo crashes one)"
        );
    }
    tokio::signal::ctrl_c().await?;
    println!("stopping: gateway, then each service (deregister → drain)");
    system.stop().await
}
