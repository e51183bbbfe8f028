//! The seed's e-commerce system, first cut: seven services and a gateway in
//! one process, on embedded defaults (a SQLite file per service, an
//! in-memory discovery registry, an in-process event bus).
//!
//! | service | module | store |
//! |---|---|---|
//! | user-service | [`services::user`] (JWT logins, JWKS, sessions) | `users.db` |
//! | product-service ×2 | [`services::product`] (FTS5 search, live settings) | `products.db` (shared) |
//! | order-service | [`services::order`] (place-order saga, outbox, event-sourced history) | `orders.db` |
//! | inventory-service | [`services::inventory`] | `inventory.db` |
//! | payment-service | [`services::payment`] | `payments.db` |
//! | shipping-service | [`services::shipping`] | `shipping.db` |
//! | notification-service | [`services::notification`] (inbox, SSE) | `notifications.db` |
//!
//! Each service is an axum router served on its own port by
//! [`platform::serve`] (msp-core observe layers, health, graceful shutdown
//! that deregisters first) and registered in one msp-discovery
//! [`MemoryRegistry`]; services call each other by name through
//! [`platform::ServiceClient`]. msp-gateway fronts them with
//! `config/gateway.yaml` ([`gateway`]), retrying product-service's two
//! instances on each other and ejecting a crashed one
//! ([`System::crash_instance`]). Every service's settings come from an
//! msp-config config server serving `{data dir}/config/`, polled each
//! second ([`platform::settings`]: edit a file, the services follow).
//!
//! # Example
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), msp_core::BoxError> {
//! let dir = tempfile::tempdir()?;
//! let system = ecommerce::System::start(ecommerce::SystemConfig {
//!     data_dir: dir.path().to_path_buf(),
//!     gateway_listen: Some("127.0.0.1:0".parse()?), // `cargo run` uses 8080
//!     ..Default::default()
//! })
//! .await?;
//! let gw = ecommerce::demo::Http::new(system.gateway_url());
//! let (status, products) = gw.get("/api/products", None).await?;
//! assert_eq!(status, 200);
//! assert_eq!(products[0]["sku"], "book-42");
//! system.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod dashboard;
pub mod demo;
pub mod gateway;
pub mod platform;
pub mod requests;
pub mod services;

use axum::Router;
use dashboard::{ClientBreaker, Dashboard};
use msp_config::Watched;
use msp_core::BoxError;
use msp_core::authz::{AuthorizationLayer, AuthorizationPolicies, PolicyHandle};
use msp_core::shutdown::{Shutdown, ShutdownReport};
use msp_discovery::MemoryRegistry;
use msp_gateway::Gateway;
use msp_gateway::admin::Admin;
use msp_resilience::chaos::ChaosHandle;
use msp_saga::outbox::BroadcastPublisher;
use msp_saga::saga::SqliteSagaStore;
use platform::settings::{ConfigService, ServiceSettings};
use platform::{Running, Security, ServiceClient, open_db, serve_with_tls, with_chaos};
use requests::RequestLog;
use services::notification::FeedEntry;
use services::order::{Downstream, OrderService};
use services::{inventory, notification, payment, product, shipping, user};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::broadcast;

/// How to start the system.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Where the SQLite files go (default `./target/ecommerce-data`).
    pub data_dir: PathBuf,
    /// The gateway's YAML (default: `config/gateway.yaml`, embedded).
    pub gateway_yaml: String,
    /// Overrides the YAML's `listen` (tests: `127.0.0.1:0`).
    pub gateway_listen: Option<SocketAddr>,
    /// Where the services listen (default `127.0.0.1:0`: ports the OS picks).
    pub service_bind: SocketAddr,
    /// Shipping refuses addresses containing this (default `FAIL`).
    pub shipping_fail_marker: String,
    /// user-service keeps its login sessions in this Redis
    /// (`redis://127.0.0.1:6379`; default: in memory).
    pub redis_url: Option<String>,
    /// The prefix of user-service's Redis keys (default `ecommerce:`): one
    /// per system sharing a Redis.
    pub redis_prefix: String,
    /// How long a login session lives after its last refresh (default 7 days).
    pub session_ttl: std::time::Duration,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            data_dir: PathBuf::from("target/ecommerce-data"),
            gateway_yaml: gateway::DEFAULT_YAML.to_owned(),
            gateway_listen: None,
            service_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            shipping_fail_marker: "FAIL".to_owned(),
            redis_url: None,
            redis_prefix: "ecommerce:".to_owned(),
            session_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The running system.
#[derive(Debug)]
pub struct System {
    registry: MemoryRegistry,
    gateway: Gateway,
    gateway_addr: SocketAddr,
    gateway_shutdown: Shutdown,
    gateway_task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Started order: the gateway-facing services last, stopped first.
    services: Vec<Running>,
    feed: broadcast::Sender<FeedEntry>,
    bus: BroadcastPublisher,
    dashboard: Dashboard,
    security: Security,
    stop_background: Shutdown,
    config: ConfigService,
    settings: BTreeMap<&'static str, Watched<ServiceSettings>>,
}

/// The authorization policies of the services only order-service's saga
/// writes to (`config/authz/internal.yaml`).
pub const INTERNAL_AUTHZ_YAML: &str = include_str!("../config/authz/internal.yaml");

/// How many product-service instances the system runs.
pub const PRODUCT_INSTANCES: usize = 2;

/// The services of the system, in start order.
pub const SERVICES: [&str; 7] = [
    "inventory-service",
    "payment-service",
    "shipping-service",
    "product-service",
    "notification-service",
    "order-service",
    "user-service",
];

/// Wraps each service's routes the same way: `GET /settings` (its live
/// settings from the config server), authorization (for the services that
/// have policies), a chaos switch (off), then the request log, so denials
/// and injected faults show among the recent requests.
struct Instrument {
    requests: RequestLog,
    chaos: BTreeMap<&'static str, ChaosHandle>,
    internal: PolicyHandle,
    settings: BTreeMap<&'static str, Watched<ServiceSettings>>,
}

impl Instrument {
    fn routes(&mut self, name: &'static str, routes: Router) -> Result<Router, BoxError> {
        let settings = self.settings.get(name).ok_or("no settings")?.clone();
        let routes = routes.merge(platform::settings::routes(settings));
        let (routes, chaos) = with_chaos(routes)?;
        self.chaos.insert(name, chaos);
        Ok(self.requests.wrap(name, routes))
    }

    /// [`routes`](Self::routes) behind the internal services' policies.
    fn internal(&mut self, name: &'static str, routes: Router) -> Result<Router, BoxError> {
        let routes = routes.layer(AuthorizationLayer::new(self.internal.clone()));
        self.routes(name, routes)
    }
}

impl System {
    /// Opens the stores, starts the seven services and the gateway.
    pub async fn start(config: SystemConfig) -> Result<System, BoxError> {
        let registry = MemoryRegistry::new();
        let dir = &config.data_dir;
        let bind = config.service_bind;
        let background = Shutdown::new();
        let mut services = Vec::new();
        // Workload identities from the dev CA (created on first run) and
        // the internal services' authorization policies.
        let security = Security::dev(dir.join("certs"), &SERVICES)?;
        let identity = |name: &str| security.identity(name);
        let internal: AuthorizationPolicies = serde_saphyr::from_str(INTERNAL_AUTHZ_YAML)
            .map_err(|e| format!("config/authz/internal.yaml: {e}"))?;
        // The config server, then every service's settings from it.
        let config_server = ConfigService::start(dir.join("config"), bind).await?;
        let mut settings = BTreeMap::new();
        for name in SERVICES {
            settings.insert(name, config_server.watch(name).await?);
        }
        let mut instrument = Instrument {
            requests: RequestLog::new(500),
            chaos: BTreeMap::new(),
            internal: PolicyHandle::new(internal),
            settings: settings.clone(),
        };

        let db = open_db(dir, "inventory.db").await?;
        let stock: Vec<(String, i64)> = product::seed_catalog()
            .into_iter()
            .map(|p| (p.sku, 100))
            .collect();
        let stock: Vec<(&str, i64)> = stock.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        inventory::migrate(&db, &stock).await?;
        services.push(
            serve_with_tls(
                "inventory-service",
                instrument.internal("inventory-service", inventory::routes(db.clone()))?,
                db,
                &registry,
                bind,
                Some(&identity("inventory-service")?),
            )
            .await?,
        );

        let db = open_db(dir, "payments.db").await?;
        payment::migrate(&db).await?;
        services.push(
            serve_with_tls(
                "payment-service",
                instrument.internal("payment-service", payment::routes(db.clone()))?,
                db,
                &registry,
                bind,
                Some(&identity("payment-service")?),
            )
            .await?,
        );

        let db = open_db(dir, "shipping.db").await?;
        shipping::migrate(&db).await?;
        let routes = shipping::routes(db.clone(), &config.shipping_fail_marker);
        let routes = instrument.internal("shipping-service", routes)?;
        let id = identity("shipping-service")?;
        services.push(
            serve_with_tls("shipping-service", routes, db, &registry, bind, Some(&id)).await?,
        );

        // Two product-service instances sharing one catalog, both
        // registered under `product-service` (the demo crashes one).
        let db = open_db(dir, "products.db").await?;
        product::migrate(&db, &product::seed_catalog()).await?;
        let live = settings
            .get("product-service")
            .ok_or("no settings")?
            .clone();
        let routes = instrument.routes("product-service", product::routes(db.clone(), live))?;
        let id = identity("product-service")?;
        for _ in 0..PRODUCT_INSTANCES {
            let (routes, db) = (routes.clone(), db.clone());
            services.push(
                serve_with_tls("product-service", routes, db, &registry, bind, Some(&id)).await?,
            );
        }

        // The bus and its one consumer exist before the relay starts.
        let bus = BroadcastPublisher::new(1024);
        let (feed, _) = broadcast::channel(1024);
        let db = open_db(dir, "notifications.db").await?;
        notification::migrate(&db).await?;
        tokio::spawn(notification::consume(
            db.clone(),
            bus.subscribe(),
            feed.clone(),
        ));
        let routes = notification::routes(db.clone(), feed.clone());
        let routes = instrument.routes("notification-service", routes)?;
        let id = identity("notification-service")?;
        services.push(
            serve_with_tls(
                "notification-service",
                routes,
                db,
                &registry,
                bind,
                Some(&id),
            )
            .await?,
        );

        let db = open_db(dir, "orders.db").await?;
        // order-service calls the others over mTLS as itself.
        let me = identity("order-service")?;
        let client = |service| ServiceClient::with_identity(&registry, service, Some(&me));
        let downstream = Downstream {
            products: client("product-service")?,
            inventory: client("inventory-service")?,
            payment: client("payment-service")?,
            shipping: client("shipping-service")?,
        };
        let breakers: Vec<ClientBreaker> = [
            &downstream.products,
            &downstream.inventory,
            &downstream.payment,
            &downstream.shipping,
        ]
        .into_iter()
        .map(|c| ClientBreaker {
            caller: "order-service",
            callee: c.service(),
            breaker: c.breaker().clone(),
        })
        .collect();
        let sagas = SqliteSagaStore::new(db.clone());
        let orders = OrderService::start(
            db.clone(),
            downstream,
            bus.clone(),
            background.stop_accepting(),
        )
        .await?;
        let routes = instrument.routes("order-service", orders.routes())?;
        services
            .push(serve_with_tls("order-service", routes, db, &registry, bind, Some(&me)).await?);

        // The gateway, then user-service (its logins reload the gateway).
        let keys = gateway::KeyRing::default();
        let user_db = open_db(dir, "users.db").await?;
        user::migrate(&user_db).await?;
        let auth = user::auth(
            dir,
            config.redis_url.as_deref(),
            &config.redis_prefix,
            config.session_ttl,
            keys.issuer(),
        )?;
        let users = serve_with_tls(
            "user-service",
            instrument.routes("user-service", user::routes(user_db.clone(), auth))?,
            user_db,
            &registry,
            bind,
            Some(&identity("user-service")?),
        )
        .await?;
        // The gateway trusts user-service's JWK set, at the port it got.
        let users_addr = users.addr;
        services.push(users);

        let gw_config = gateway::config(&config.gateway_yaml, config.gateway_listen, &services)?;
        let gw_config = user::trust_in_gateway(&gw_config, users_addr)?;
        let listener = tokio::net::TcpListener::bind(gw_config.listen()).await?;
        let gateway_addr = listener.local_addr()?;
        let gw = Gateway::with_registry(gw_config, registry.clone()).await?;
        keys.attach(gw.clone());
        let gateway_shutdown = Shutdown::new();
        let gateway_task = tokio::spawn({
            let (gw, shutdown) = (gw.clone(), gateway_shutdown.clone());
            async move { gw.serve_with_shutdown(listener, &shutdown).await }
        });
        tracing::info!(%gateway_addr, "gateway started");
        let dashboard = Dashboard::new(
            gw.clone(),
            registry.clone(),
            SERVICES.to_vec(),
            breakers,
            instrument.chaos,
            instrument.requests,
            sagas,
        );
        Ok(System {
            dashboard,
            security,
            registry,
            gateway: gw,
            gateway_addr,
            gateway_shutdown,
            gateway_task,
            services,
            feed,
            bus,
            stop_background: background,
            config: config_server,
            settings,
        })
    }

    /// The gateway's base URL (`http://127.0.0.1:8080`).
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The services' workload identities (the dev CA's directory).
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The live dashboard's data and routes.
    pub fn dashboard(&self) -> &Dashboard {
        &self.dashboard
    }

    /// Serves the dashboard with msp-gateway's admin endpoints behind it on
    /// `listener` until the system stops; `prometheus` installs the
    /// process's Prometheus recorder for `/metrics` (once per process).
    pub fn serve_dashboard(
        &self,
        listener: tokio::net::TcpListener,
        prometheus: bool,
    ) -> Result<(), BoxError> {
        let mut admin = Admin::new(self.gateway.clone());
        if prometheus {
            admin = admin.with_prometheus()?;
        }
        let app = self.dashboard.router(admin);
        let stop = self.stop_background.stop_accepting();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "dashboard listener failed");
            }
        });
        Ok(())
    }

    /// The discovery registry every service is registered in.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.registry
    }

    /// Where service `name` listens (`order-service`…).
    pub fn service_addr(&self, name: &str) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.addr)
    }

    /// New notification-feed entries, as notification-service records them.
    pub fn subscribe_feed(&self) -> broadcast::Receiver<FeedEntry> {
        self.feed.subscribe()
    }

    /// The in-process bus order-service's outbox relay publishes to.
    pub fn bus(&self) -> &BroadcastPublisher {
        &self.bus
    }

    /// The config server the services' settings come from (its
    /// directory holds the files to edit).
    pub fn config_server(&self) -> &ConfigService {
        &self.config
    }

    /// Service `name`'s live settings.
    pub fn settings(&self, name: &str) -> Option<&Watched<ServiceSettings>> {
        self.settings.get(name)
    }

    /// Where every running instance of service `name` listens.
    pub fn service_addrs(&self, name: &str) -> Vec<SocketAddr> {
        let named = self.services.iter().filter(|s| s.name == name);
        named.map(|s| s.addr).collect()
    }

    /// Crashes the last started instance of service `name`
    /// ([`Running::crash`](platform::Running::crash): listener and
    /// connections gone, still registered) and returns its address.
    pub fn crash_instance(&self, name: &str) -> Result<SocketAddr, BoxError> {
        let running = self.services.iter().rev().find(|s| s.name == name);
        let running = running.ok_or_else(|| format!("{name} is not running"))?;
        running.crash();
        Ok(running.addr)
    }

    /// Stops one service (its shutdown sequence: not ready → deregister →
    /// drain → stop) and returns its report; the others keep running.
    pub async fn stop_service(&mut self, name: &str) -> Result<ShutdownReport, BoxError> {
        let at = self
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("{name} is not running"))?;
        self.services.remove(at).stop().await
    }

    /// Stops the gateway, then each service (deregister → drain → stop),
    /// gateway-facing services first, then the background tasks.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        self.gateway_shutdown.trigger();
        self.gateway_shutdown.run().await;
        self.gateway_task.await??;
        while let Some(service) = self.services.pop() {
            service.stop().await?;
        }
        self.stop_background.trigger();
        self.config.stop();
        Ok(())
    }
}
